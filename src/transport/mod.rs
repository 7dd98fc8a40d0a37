//! transport (to be built).
