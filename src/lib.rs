//! nix-confinement-generator: a systemd generator that confines services to
//! their Nix store closure, as the NixOS option
//! `systemd.services.<name>.confinement` does at system build time.
//!
//! The modules follow the data, which flows one way: configuration and unit
//! files (`config`, `unit`) → annotations (`annotation`, `host_sets`) → a
//! plan per service and its roots (`plan`, `roots`, host paths: `host`) →
//! closures (`closure`, `store`) →
//! views (`view`) → drop-ins (`confine`, `dropin`) → files (`output`). `cli`
//! runs one mode; all below it takes the root directory as a parameter.

pub mod annotation;
pub mod at_exit;
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
pub mod host_sets;
pub mod loaded;
pub mod logging;
pub mod output;
pub mod path_order;
pub mod plan;
pub mod prefilter;
pub mod rootfs;
pub mod roots;
pub mod scratch;
pub mod store;
#[cfg(test)]
mod test_dirs;
pub mod unit;
pub mod view;
pub mod watch;
