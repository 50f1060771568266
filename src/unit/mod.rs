//! Unit files: their syntax, where systemd finds them, and the merged view
//! of one unit with the provenance of each assignment.

pub mod catalog;
pub mod escape;
pub mod exec;
pub mod files;
pub mod merged;
pub mod name;
pub mod search_path;
pub mod syntax;

pub use catalog::{Catalog, Entry, UnitFileRefs, UnitFiles};
pub use merged::{MergedUnit, Setting};
pub use name::UnitName;
