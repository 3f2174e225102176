//! Typed client of the files API (stub).
