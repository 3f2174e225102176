//! Typed client of the backoffice API (stub).
