//! sip (to be built).
