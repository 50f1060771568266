//! nix-confinement-generator: a systemd generator that confines services to
//! their Nix store closure, as the NixOS option
//! `systemd.services.<name>.confinement` does at system build time.
//!
//! The data flows one way and the modules follow it:
//! unit files (`unit`) → annotations (`annotation`) → roots and closure
//! (`store`) → drop-in text (`dropin`) → files (`output`). `generate` runs the
//! pipeline; `cli` is the thin entry point. Everything below `cli` takes the
//! root directory as a parameter, so tests need no privileges.

pub mod annotation;
pub mod check_loaded;
pub mod cli;
pub mod config;
pub mod diag;
pub mod dropin;
pub mod dropin_store;
pub mod fast_map;
pub mod generate;
pub mod loaded;
pub mod logging;
pub mod output;
pub mod rootfs;
pub mod store;
pub mod unit;
pub mod watch;
