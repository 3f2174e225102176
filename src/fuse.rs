//! The thin fuser adapter (stub).
