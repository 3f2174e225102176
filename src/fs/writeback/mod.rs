//! Write-back: the local spool that holds written bytes, the journal that
//! makes them survive a crash, the upload of a closed file (with conflict
//! copies and informed retries of creating calls), background retries,
//! recovery at start and the drain at shutdown.

pub(in crate::fs) mod drain;
pub mod journal;
pub(in crate::fs) mod recover;
pub(in crate::fs) mod retry;
pub mod spool;
pub(in crate::fs) mod upload;
