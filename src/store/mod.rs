//! The Nix store: recognising store paths, the database of valid paths and
//! their references, and the closure of a set of store paths.

pub mod cache;
pub mod db;
pub mod disk;
pub mod path;
pub mod summaries;

pub use db::{DbError, NixDb};
pub use path::{Found, StoreDir};
