//! The drop-ins of the last run, linked again when nothing they were made
//! from has changed.
//!
//! A hundred confined units are 8 MiB of drop-ins, and rendering and
//! writing them again on every `daemon-reload` was a fifth of a run. A
//! drop-in is a function of what it is made from: the generator's binary,
//! what [`crate::dropin::render_confinement`] reads of the unit (see
//! [`crate::dropin::encode_inputs`]), and the unit's closure — which, when
//! every root of the unit is in the closure cache, is fixed by the cache file
//! and the roots' places in it (a cache is closed under references and
//! checked against the database on every run, see [`crate::store::cache`])
//! — except for symlinks in it, whose targets are resolved through the
//! host's files: the targets of all the cache's symlinks are resolved once
//! per run and go into every key. [`Key`] is a 128-bit digest of these. The
//! store keeps each rendered drop-in as `<key>.conf`; a run that finds a
//! unit's key there hard-links that file into the output directory and
//! neither walks the unit's closure nor renders it.
//!
//! What keeps this safe:
//! - a unit with a root not in the closure cache is not kept: it is
//!   rendered on every run;
//! - a file is written whole (a temporary name, renamed) and never written
//!   again: the output directory's link and the store's are one inode;
//! - the store is used only when it is a directory of ours that no one else
//!   can write, on the output directory's file system (a hard link cannot
//!   cross file systems; `/run` and `/run/systemd/generator` are one tmpfs);
//! - a run removes every file it did not use: the store holds the drop-ins
//!   of the last run, no more;
//! - when a link fails, the drop-in is rendered and written as without a
//!   store.
//!
//! A run that writes the closure cache again (it read something new from
//! the database) changes every key: the next run renders and keeps every
//! drop-in once more, and the one after links them.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hasher};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;

use camino::{Utf8Path, Utf8PathBuf};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::output::OutputDir;
use crate::store::cache::FileStamp;

/// The 128-bit digest a drop-in is kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(u64, u64);

impl Key {
    /// The name of the file that holds the drop-in.
    pub fn file_name(&self) -> String {
        format!("{:016x}{:016x}.conf", self.0, self.1)
    }
}

/// Two SipHash-1-3 (std's `DefaultHasher`, fixed keys) over the same input,
/// told apart by a first byte: 128 bits, so that two different inputs never
/// meet by chance. It is not meant to resist inputs chosen to collide: that
/// takes writing unit files, and whoever can do that can write the store.
pub struct KeyHasher(DefaultHasher, DefaultHasher);

impl KeyHasher {
    pub fn new() -> KeyHasher {
        let (mut first, mut second) = (DefaultHasher::new(), DefaultHasher::new());
        first.write_u8(1);
        second.write_u8(2);
        KeyHasher(first, second)
    }

    pub fn key(&self) -> Key {
        Key(self.0.finish(), self.1.finish())
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher::new()
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// An open drop-in store.
pub struct DropinStore {
    path: Utf8PathBuf,
    dir: OwnedFd,
    /// The running generator's binary: another build may render otherwise.
    binary: FileStamp,
    /// The names in the store when it was opened.
    present: HashSet<String>,
}

impl DropinStore {
    /// Opens the store at `path` (made, mode 0700, when missing) for drop-ins
    /// linked into `output`. `Err` says why it cannot be used.
    pub fn open(path: &Utf8Path, output: &OutputDir) -> Result<DropinStore, String> {
        let binary = std::fs::metadata("/proc/self/exe")
            .map(|m| FileStamp::of(&m))
            .map_err(|e| format!("/proc/self/exe: {e}"))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| format!("{path}: {e}"))?;
        let dir = openat(
            nix::fcntl::AT_FDCWD,
            path.as_std_path(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("{path}: {}", e.desc()))?;
        let own = fstat(&dir).map_err(|e| format!("{path}: {}", e.desc()))?;
        if own.st_uid != nix::unistd::geteuid().as_raw() || own.st_mode & 0o022 != 0 {
            return Err(format!(
                "{path}: owned by uid {} with mode {:o}; only a directory of ours that no one else can write is used",
                own.st_uid,
                own.st_mode & 0o7777
            ));
        }
        let out = fstat(output.dir()).map_err(|e| format!("{}: {}", output.path(), e.desc()))?;
        if own.st_dev != out.st_dev {
            return Err(format!(
                "{path} is not on the file system of {} (a hard link cannot cross)",
                output.path()
            ));
        }
        let present = std::fs::read_dir(path)
            .map_err(|e| format!("{path}: {e}"))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect();
        Ok(DropinStore {
            path: path.to_owned(),
            dir,
            binary,
            present,
        })
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    pub fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// What identifies the running generator's binary (part of every key).
    pub fn binary(&self) -> FileStamp {
        self.binary
    }

    /// Whether the store holds the drop-in kept as `file_name`.
    pub fn holds(&self, file_name: &str) -> bool {
        self.present.contains(file_name)
    }

    /// Keeps `text` as `file_name` (whole, or not at all).
    pub fn keep(&self, file_name: &str, text: &str) -> Result<(), String> {
        crate::output::write_atomically(&self.dir, file_name, text)
            .map_err(|e| format!("{}: {e}", self.path.join(file_name)))
    }

    /// Removes every file that was there when the store was opened and is
    /// not in `used` (the drop-ins of units that changed or went away, and
    /// what an interrupted run left). Returns how many were removed.
    pub fn remove_unused(&self, used: &HashSet<String>) -> usize {
        self.present
            .iter()
            .filter(|name| !used.contains(*name))
            .filter(|name| unlinkat(&self.dir, name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn key_of(value: impl Hash) -> Key {
        let mut hasher = KeyHasher::new();
        value.hash(&mut hasher);
        hasher.key()
    }

    #[test]
    fn keys_are_stable_within_a_build_and_tell_inputs_apart() {
        assert_eq!(key_of(("a", 1)), key_of(("a", 1)));
        assert_ne!(key_of(("a", 1)), key_of(("a", 2)));
        assert_ne!(key_of(("ab", "")), key_of(("a", "b")));
        let key = key_of("x");
        assert_ne!(key.0, key.1, "the two halves are different hashes");
        let name = key.file_name();
        assert_eq!(name.len(), 32 + ".conf".len());
        assert!(
            name.trim_end_matches(".conf")
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
    }
}
