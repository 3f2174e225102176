//! One [`Backend`](super::backend::Backend) per remote namespace.

pub mod backoffice;
pub mod files;
pub mod library;
