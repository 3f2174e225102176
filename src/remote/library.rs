//! Typed client of the library API (stub).
