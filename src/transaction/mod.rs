//! transaction (to be built).
