//! A unit's effective settings: the main file, then every drop-in in order,
//! with the file and line of each assignment kept for messages.

use super::catalog::UnitFiles;
use super::files::FileReader;
use super::syntax::parse_unit_file;
use crate::diag::{Diagnostic, Location};
use camino::Utf8PathBuf;

/// One assignment, where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub section: String,
    pub key: String,
    pub value: String,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedUnit {
    pub name: String,
    /// The files the unit was read from (logical paths as found), main first.
    pub sources: Vec<Utf8PathBuf>,
    /// Every assignment of every file, in the order systemd applies them.
    pub settings: Vec<Setting>,
    /// Drop-in file names that apply to or hide others for this unit.
    pub dropin_names: std::collections::BTreeSet<String>,
    /// Problems systemd would log while loading it.
    pub warnings: Vec<Diagnostic>,
}

impl MergedUnit {
    /// Reads and merges the files. `Err` when systemd would refuse to load
    /// the unit (its main file or a drop-in cannot be parsed).
    pub fn load(reader: &mut FileReader<'_>, files: &UnitFiles) -> Result<MergedUnit, Diagnostic> {
        let mut merged = MergedUnit {
            name: files.name.clone(),
            sources: vec![files.fragment_path.clone()],
            settings: Vec::new(),
            dropin_names: files.dropin_names.clone(),
            warnings: Vec::new(),
        };
        merged.apply(reader, &files.fragment_path, &files.fragment_real)?;
        for dropin in &files.dropins {
            let Some(real) = &dropin.real else { continue };
            merged.sources.push(dropin.path.clone());
            merged.apply(reader, &dropin.path, real)?;
        }
        Ok(merged)
    }

    fn apply(
        &mut self,
        reader: &mut FileReader<'_>,
        path: &Utf8PathBuf,
        real: &Utf8PathBuf,
    ) -> Result<(), Diagnostic> {
        let with_unit = |mut d: Diagnostic| {
            d.unit = Some(self.name.clone());
            d
        };
        let bytes = reader.read(real).map_err(|error| {
            with_unit(Diagnostic::error(
                None,
                Some(Location::new(path, 0)),
                format!("cannot read {real}: {error}"),
            ))
        })?;
        let parsed = parse_unit_file(&bytes, path).map_err(with_unit)?;
        self.warnings
            .extend(parsed.warnings.into_iter().map(with_unit));
        self.settings
            .extend(parsed.assignments.into_iter().map(|a| Setting {
                section: a.section,
                key: a.key,
                value: a.value,
                location: Location::new(path, a.line),
            }));
        Ok(())
    }

    /// All assignments of `section`/`key`, in order.
    pub fn assignments<'a>(
        &'a self,
        section: &'a str,
        key: &'a str,
    ) -> impl DoubleEndedIterator<Item = &'a Setting> + 'a {
        self.settings
            .iter()
            .filter(move |s| s.section == section && s.key == key)
    }

    /// The effective value of a scalar key: its last assignment, or `None`
    /// when it is never assigned or its last assignment is empty (a reset to
    /// the default). This is what "the unit sets the key" means.
    pub fn scalar<'a>(&'a self, section: &'a str, key: &'a str) -> Option<&'a Setting> {
        self.assignments(section, key)
            .last()
            .filter(|s| !s.value.is_empty())
    }

    /// The effective assignments of a list key: every non-empty one after the
    /// last empty assignment (which resets the list).
    pub fn list<'a>(&'a self, section: &'a str, key: &'a str) -> Vec<&'a Setting> {
        let all: Vec<&Setting> = self.assignments(section, key).collect();
        let start = all
            .iter()
            .rposition(|s| s.value.is_empty())
            .map_or(0, |i| i + 1);
        all[start..].to_vec()
    }
}
