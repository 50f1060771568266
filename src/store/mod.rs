//! The Nix store: recognising store paths, the database of valid paths and
//! their references, and the roots and closure of a confined unit.

pub mod cache;
pub mod db;
pub mod disk;
pub mod path;
pub mod roots;

pub use db::{DbError, NixDb};
pub use path::{Found, StoreDir};
