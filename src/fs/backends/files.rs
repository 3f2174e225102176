//! The files namespace (stub).
