//! Emulator of the library API (stub: to be written).

use axum::Router;
use serde::{Deserialize, Serialize};

use super::Emu;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LibraryState {}

impl LibraryState {
    pub fn demo() -> Self {
        Self::default()
    }
    pub fn empty() -> Self {
        Self::default()
    }
}

pub fn routes() -> Router<Emu> {
    Router::new()
}
