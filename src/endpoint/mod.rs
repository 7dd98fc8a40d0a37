//! endpoint (to be built).
