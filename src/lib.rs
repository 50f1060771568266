//! nix-confinement-generator: a systemd generator that confines services to
//! their Nix store closure, as the NixOS option
//! `systemd.services.<name>.confinement` does at system build time.
//!
//! The data flows one way and the modules follow it: the configuration
//! (`config`) and unit files (`unit`) → annotations (`annotation`) → a plan
//! per service with its roots (`plan`, `store::roots`) → closures from the
//! Nix database (`closure`, `store`) → views (`view`) → drop-in text
//! (`confine`, `dropin`) → files (`output`). `cli` reads argv and runs one
//! mode: the generator, `explain`, `check` or `view`. Everything below `cli`
//! takes the root directory as a parameter, so tests need no privileges.

pub mod annotation;
pub mod check_loaded;
pub mod cli;
pub mod closure;
pub mod config;
pub mod confine;
pub mod diag;
pub mod dropin;
pub mod fast_map;
pub mod generator;
pub mod host;
pub mod loaded;
pub mod logging;
pub mod output;
pub mod plan;
pub mod rootfs;
pub mod scratch;
pub mod store;
pub mod unit;
pub mod view;
pub mod watch;
