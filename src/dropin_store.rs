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

use camino::Utf8Path;
use nix::dir::{Dir, Type};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::output::OutputDir;
use crate::rootfs::Root;
use crate::scratch::ScratchDir;
use crate::store::cache::FileStamp;

/// The 128-bit digest a drop-in is kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(u64, u64);

impl Key {
    /// The name of the file that holds the drop-in.
    pub fn file_name(&self) -> String {
        format!("{:016x}{:016x}.conf", self.0, self.1)
    }

    /// The digest's two halves.
    pub fn parts(&self) -> (u64, u64) {
        (self.0, self.1)
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

/// Why the drop-in store is not used.
#[derive(Debug)]
pub enum NotUsed {
    /// It is on another file system than the output directory (a run by
    /// hand into a directory elsewhere): nothing is wrong.
    Elsewhere(String),
    /// It cannot be made, trusted or kept to itself: to be looked at.
    Refused(String),
}

impl std::fmt::Display for NotUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotUsed::Elsewhere(why) | NotUsed::Refused(why) => f.write_str(why),
        }
    }
}

/// An open drop-in store.
pub struct DropinStore {
    dir: ScratchDir,
    /// The running generator's binary: another build may render otherwise.
    binary: FileStamp,
    /// The names in the store when it was opened (all of them its own).
    present: HashSet<String>,
}

impl DropinStore {
    /// Opens the store at the logical `path` inside `root` (made, mode 0700,
    /// when missing; see [`crate::scratch`] for where it may be) for drop-ins
    /// linked into `output`. It must be a directory of its own: not the
    /// closure cache's (`closure_cache` is that file), and holding nothing
    /// but what a run of the store left, since a run removes what it did
    /// not use. `Err` says why it cannot be used.
    pub fn open(
        root: &Root,
        path: &Utf8Path,
        output: &OutputDir,
        closure_cache: Option<&Utf8Path>,
    ) -> Result<DropinStore, NotUsed> {
        let refused = NotUsed::Refused;
        let binary = std::fs::metadata("/proc/self/exe")
            .map(|m| FileStamp::of(&m))
            .map_err(|e| refused(format!("/proc/self/exe: {e}")))?;
        let dir = ScratchDir::create(root, path).map_err(refused)?;
        let shown = dir.path().to_owned();
        let own = fstat(dir.fd()).map_err(|e| refused(format!("{shown}: {}", e.desc())))?;
        let out =
            fstat(output.dir()).map_err(|e| refused(format!("{}: {}", output.path(), e.desc())))?;
        if own.st_dev != out.st_dev {
            return Err(NotUsed::Elsewhere(format!(
                "{shown} is not on the file system of {} (a hard link cannot cross)",
                output.path()
            )));
        }
        if let Some(cache) = closure_cache
            && let Ok((cache_dir, _)) = crate::scratch::split_file(cache)
            && let Ok(Some(cache_dir)) = ScratchDir::find(root, cache_dir)
            && cache_dir.is(&dir)
        {
            return Err(refused(format!(
                "{shown} is also the directory of the closure cache {cache}; the drop-in store needs one of its own"
            )));
        }
        let present = list_own_files(&dir).map_err(refused)?;
        Ok(DropinStore {
            dir,
            binary,
            present,
        })
    }

    /// Where the store is (logical, links resolved).
    pub fn path(&self) -> &Utf8Path {
        self.dir.path()
    }

    pub fn dir(&self) -> &OwnedFd {
        self.dir.fd()
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
        crate::output::write_atomically(self.dir(), file_name, text)
            .map_err(|e| format!("{}: {e}", self.path().join(file_name)))
    }

    /// Removes every file that was there when the store was opened and is
    /// not in `used` (the drop-ins of units that changed or went away, and
    /// what an interrupted run left) — only ever a name the store gives.
    /// Returns how many were removed.
    pub fn remove_unused(&self, used: &HashSet<String>) -> usize {
        self.present
            .iter()
            .filter(|name| !used.contains(*name) && is_own_name(name))
            .filter(|name| unlinkat(self.dir(), name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok())
            .count()
    }
}

/// The names in the store, when each is a file the store made: a kept
/// drop-in or the temporary file of one. Anything else means the directory
/// is not the store's alone (another program's, or the closure cache's),
/// and nothing in it may be removed: `Err` names what is there.
fn list_own_files(dir: &ScratchDir) -> Result<HashSet<String>, String> {
    let shown = dir.path();
    let mut listing = Dir::openat(
        dir.fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{shown}: {}", e.desc()))?;
    let refused = |name: &str, what: &str| {
        format!(
            "{shown} holds {name:?}, {what}; the drop-in store is used only in a directory of its own"
        )
    };
    let mut present = HashSet::new();
    for entry in listing.iter() {
        let entry = entry.map_err(|e| format!("{shown}: {}", e.desc()))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            let lossy = String::from_utf8_lossy(name);
            return Err(refused(&lossy, "which it did not make"));
        };
        if !is_own_name(name) {
            return Err(refused(name, "which it did not make"));
        }
        let is_file = match entry.file_type() {
            Some(kind) => kind == Type::File,
            // Not every file system says in the listing.
            None => fstatat(dir.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFREG),
        };
        if !is_file {
            return Err(refused(name, "which is not a regular file"));
        }
        present.insert(name.to_owned());
    }
    Ok(present)
}

/// A name the store gives: a kept drop-in's ([`Key::file_name`]), or the
/// temporary name it is written under (see
/// [`crate::output::temporary_name`]), which a killed run may leave.
fn is_own_name(name: &str) -> bool {
    is_kept_name(name)
        || name
            .strip_prefix('.')
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|rest| rest.rsplit_once('.'))
            .is_some_and(|(kept, pid)| {
                is_kept_name(kept) && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
            })
}

/// 32 lowercase hexadecimal digits and `.conf`.
fn is_kept_name(name: &str) -> bool {
    name.strip_suffix(".conf").is_some_and(|digest| {
        digest.len() == 32
            && digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
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

    #[test]
    fn the_store_recognises_its_own_names_only() {
        let kept = key_of("x").file_name();
        assert!(is_own_name(&kept));
        assert!(is_own_name(&crate::output::temporary_name(&kept)));
        for other in [
            "closures",
            ".closures.123",
            "initctl",
            "notify",
            "0123456789abcdef0123456789abcdef.conf~",
            "0123456789ABCDEF0123456789abcdef.conf",
            "0123456789abcdef0123456789abcde.conf",
            ".0123456789abcdef0123456789abcdef.conf..tmp",
            ".0123456789abcdef0123456789abcdef.conf.1x.tmp",
            "dropins",
            "",
        ] {
            assert!(!is_own_name(other), "{other:?}");
        }
    }
}
