//! The library namespace (stub).
