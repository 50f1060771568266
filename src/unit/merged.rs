//! A unit's effective settings: the main file, then every drop-in in order,
//! with the file and line of each assignment kept for messages.

use super::catalog::UnitFiles;
use super::syntax::parse_unit_file;
use crate::diag::{Diagnostic, Location};
use crate::fast_map::FastMap;
use crate::rootfs::Root;
use camino::{Utf8Path, Utf8PathBuf};
use std::sync::Arc;

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

/// A file's bytes, or why it cannot be read.
pub type FileContents = Result<Arc<[u8]>, String>;

/// Reads files under the root, each once per run: a top-level drop-in
/// (`service.d/`) applies to every service, and a unit's files are read
/// before parsing to see whether it mentions annotations at all.
pub struct FileReader<'r> {
    root: &'r Root,
    /// By path as text: hashing and comparing a `Path` goes component by
    /// component, which made each lookup cost more than reading the bytes
    /// (the paths are all made the same way: a resolved directory joined
    /// with a name; a path spelt otherwise is only read again).
    cache: FastMap<String, FileContents>,
}

impl<'r> FileReader<'r> {
    pub fn new(root: &'r Root) -> Self {
        FileReader {
            root,
            cache: FastMap::default(),
        }
    }

    pub fn root(&self) -> &'r Root {
        self.root
    }

    /// What [`FileReader::read`] or [`FileReader::insert_all`] found for a
    /// file, without reading it.
    pub fn read_before(&self, real: &Utf8Path) -> Option<&FileContents> {
        self.cache.get(real.as_str())
    }

    /// Takes files read elsewhere (`real` → bytes, or why not).
    pub fn insert_all(&mut self, files: Vec<(Utf8PathBuf, FileContents)>) {
        self.cache.extend(
            files
                .into_iter()
                .map(|(path, read)| (path.into_string(), read)),
        );
    }

    /// The bytes of a (resolved, logical) file, or why it cannot be read.
    pub fn read(&mut self, real: &Utf8Path) -> FileContents {
        if let Some(cached) = self.cache.get(real.as_str()) {
            return cached.clone();
        }
        let read = read_file(&self.root.join(real), &mut Vec::new()).map_err(|e| e.to_string());
        self.cache.insert(real.as_str().to_owned(), read.clone());
        read
    }
}

/// A whole file: open, read until the end, close — no `fstat()` for a size
/// hint (unit files are small; a system call is what costs here).
/// `buffer` is reused from file to file: a fresh buffer per file would be
/// fresh memory per file, a page fault each (unit files are a few hundred
/// bytes; the result is copied out at its size).
pub(crate) fn read_file(path: &Utf8Path, buffer: &mut Vec<u8>) -> std::io::Result<Arc<[u8]>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO where a unit file was listed must not block the boot.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    read_whole(file, buffer)
}

/// [`read_file`] of `name` in the directory `dir`: the kernel walks one
/// component instead of the whole path (a thousand unit files sit in a few
/// search directories).
pub(crate) fn read_file_at(
    dir: &std::os::fd::OwnedFd,
    name: &str,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Arc<[u8]>> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    read_whole(std::fs::File::from(fd), buffer)
}

fn read_whole(file: std::fs::File, buffer: &mut Vec<u8>) -> std::io::Result<Arc<[u8]>> {
    use std::io::Read;
    // Through `take`, std reads straight into the vector until the end,
    // without the fstat() and lseek() it does for `File` to size it.
    buffer.clear();
    buffer.reserve(16 * 1024);
    (&file).take(u64::MAX).read_to_end(buffer)?;
    Ok(Arc::from(&buffer[..]))
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
