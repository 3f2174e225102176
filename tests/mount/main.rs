//! The real-mount suites in one test binary (one link instead of ten):
//! each module mounts the daemon for real over the emulator and drives it
//! with `std::fs` and real programs.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod consistency;
mod differential;
mod faults;
mod local;
mod read;
mod security;
mod service;
mod views;
mod write;
