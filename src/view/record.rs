//! The generator's side of closure views: the directory where it records
//! each confined unit's closure (see [`super::closure_list`]), whether the
//! kernel can mount views at all, and the removal of records no unit names
//! any more.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::AsRawFd;

use camino::{Utf8Path, Utf8PathBuf};
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::closure_list::{self, Digest};
use super::record_writer::RecordWriter;
use crate::rootfs::Root;
use crate::scratch::{ScratchDir, ScratchError};

/// Why closures cannot be recorded for views (they are not used then), or
/// a record could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The running kernel cannot mount views: why.
    Kernel(String),
    /// `trusted.*` attributes cannot be set in the records' directory.
    NoTrustedAttributes { path: Utf8PathBuf, errno: Errno },
    /// The records' directory or a record in it, and what is wrong.
    Path { path: Utf8PathBuf, message: String },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Kernel(reason) => f.write_str(reason),
            RecordError::NoTrustedAttributes { path, errno } => write!(
                f,
                "trusted extended attributes cannot be set here ({path}: {})",
                errno.desc()
            ),
            RecordError::Path { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for RecordError {}

impl From<ScratchError> for RecordError {
    fn from(e: ScratchError) -> RecordError {
        RecordError::Path {
            path: e.path,
            message: e.message,
        }
    }
}

fn error(path: &Utf8Path, message: impl Into<String>) -> RecordError {
    RecordError::Path {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Whether this run confines through views, and how.
pub enum Views {
    /// Each store path is bound on its own: why.
    Off(String),
    /// Views are used; closures are recorded for their units to mount.
    Record(Recorder),
    /// Views would be used (`explain`, `check`): digests are computed,
    /// nothing is written.
    Preview,
}

impl Views {
    /// Views for a generator run: on when configured (`lists`, where
    /// closures are recorded) and possible on this machine.
    pub fn for_run(root: &Root, lists: Option<&Utf8Path>) -> Views {
        match lists {
            None => Views::Off("[Generator] Views= is empty".to_owned()),
            Some(path) => match Recorder::open(root, path) {
                Ok(recorder) => Views::Record(recorder),
                Err(reason) => Views::Off(reason.to_string()),
            },
        }
    }

    /// What [`Views::for_run`] would decide, found without writing
    /// anything (for `explain` and `check`): the records' directory, when
    /// there is one, must be ours alone and on a file system that keeps
    /// extended attributes (asked by reading one, which writes nothing).
    pub fn preview(root: &Root, lists: Option<&Utf8Path>) -> Views {
        let Some(lists) = lists else {
            return Views::Off("[Generator] Views= is empty".to_owned());
        };
        if let Some(reason) = kernel_cannot_mount_views() {
            return Views::Off(reason);
        }
        if !in_first_user_namespace() {
            return Views::Off(
                "in a user namespace of its own, trusted extended attributes cannot be set"
                    .to_owned(),
            );
        }
        match ScratchDir::find(root, lists) {
            Err(reason) => Views::Off(reason.to_string()),
            Ok(Some(dir)) => match attributes_kept(&dir) {
                Ok(()) => Views::Preview,
                Err(reason) => Views::Off(reason.to_string()),
            },
            // Made by the generator's next run, and tried then.
            Ok(None) => Views::Preview,
        }
    }

    /// Takes the view `digest` that an earlier run recorded, when this run
    /// records and the record is still in place (it is then kept).
    pub fn reuse(&mut self, digest: Digest) -> bool {
        match self {
            Views::Record(recorder) => recorder.reuse(digest),
            Views::Off(_) | Views::Preview => false,
        }
    }

    /// Whether the record of the view `digest` is still being written (see
    /// [`Recorder::is_being_written`]).
    pub fn is_being_written(&self, digest: &str) -> bool {
        match (self, Digest::parse(digest)) {
            (Views::Record(recorder), Some(digest)) => recorder.is_being_written(digest),
            _ => false,
        }
    }

    /// Waits for the records being written (see
    /// [`Recorder::wait_for_records`]): the digests of those that could
    /// not be, and why.
    pub fn wait_for_records(&mut self) -> Vec<(String, RecordError)> {
        match self {
            Views::Record(recorder) => recorder
                .wait_for_records()
                .into_iter()
                .map(|(digest, error)| (digest.to_string(), error))
                .collect(),
            Views::Off(_) | Views::Preview => Vec::new(),
        }
    }

    /// The digest of the view of a closure (its store paths, sorted, with
    /// the run's number of each, which names its hash in `hashes`),
    /// recorded when this run records: `Ok(None)` when views are off.
    pub fn digest(
        &mut self,
        store_dir: &str,
        closure: &[(u32, &str)],
        hashes: &mut NameHashes,
    ) -> Result<Option<Digest>, RecordError> {
        let recorder = match self {
            Views::Off(_) => return Ok(None),
            Views::Record(recorder) => Some(recorder),
            Views::Preview => None,
        };
        let names = closure
            .iter()
            .map(|(number, path)| hashes.get(*number, &path[store_dir.len() + 1..]));
        let digest = closure_list::digest_of_hashes(store_dir, names);
        if let Some(recorder) = recorder {
            // A closure in path order: its names are sorted, each once.
            recorder.record(digest, || {
                closure_list::encode_sorted(
                    store_dir,
                    closure.iter().map(|(_, path)| &path[store_dir.len() + 1..]),
                )
            })?;
        }
        Ok(Some(digest))
    }
}

/// The hashes of the run's store path names, each computed once (see
/// [`closure_list::name_hash`]).
#[derive(Default)]
pub struct NameHashes(Vec<Option<u64>>);

impl NameHashes {
    fn get(&mut self, number: u32, name: &str) -> u64 {
        let index = number as usize;
        if self.0.len() <= index {
            self.0.resize(index + 1, None);
        }
        *self.0[index].get_or_insert_with(|| closure_list::name_hash(name))
    }
}

/// Whether the file system of `dir` keeps extended attributes: reading one
/// that is not there says "no such attribute" where it does.
fn attributes_kept(dir: &ScratchDir) -> Result<(), RecordError> {
    let key = CString::new("trusted.nix-confinement-probe").expect("no NUL");
    let mut byte = [0u8; 1];
    // SAFETY: an open descriptor, a NUL-terminated name, a buffer of 1.
    let read = unsafe {
        libc::fgetxattr(
            dir.fd().as_raw_fd(),
            key.as_ptr(),
            byte.as_mut_ptr().cast(),
            byte.len(),
        )
    };
    match Errno::last() {
        Errno::EOPNOTSUPP if read < 0 => Err(error(
            dir.path(),
            "its file system keeps no extended attributes",
        )),
        _ => Ok(()),
    }
}

/// Whether this process is in the first user namespace, where
/// `CAP_SYS_ADMIN` allows `trusted.*` attributes.
fn in_first_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|map| map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

/// The directory closures are recorded in, for one generator run.
pub struct Recorder {
    dir: ScratchDir,
    /// The records there when it was opened.
    present: HashSet<Digest>,
    /// Temporary files killed runs left there.
    stale: Vec<String>,
    /// The records this run's units name.
    used: HashSet<Digest>,
    /// The records of this run being written, once one is new.
    writing: Option<Box<Writing>>,
}

/// Records being written on a thread, and which.
struct Writing {
    writer: RecordWriter,
    queued: HashSet<Digest>,
}

impl Recorder {
    /// Opens (makes) the directory `path` under `root` and checks that views
    /// can be mounted on this machine. `Err` says why views are not used:
    /// confined units then bind each store path instead.
    pub fn open(root: &Root, path: &Utf8Path) -> Result<Recorder, RecordError> {
        if let Some(reason) = kernel_cannot_mount_views() {
            return Err(RecordError::Kernel(reason));
        }
        let dir = ScratchDir::create(root, path)?;
        trusted_attributes_work(&dir)?;
        let Listing { records, stale } = list_records(&dir)?;
        Ok(Recorder {
            dir,
            present: records,
            stale,
            used: HashSet::new(),
            writing: None,
        })
    }

    /// Where the records are (logical, for messages).
    pub fn path(&self) -> &Utf8Path {
        self.dir.path()
    }

    /// Records the closure whose record `text` makes under its `digest`
    /// (written whole, unless the record is there already: a digest names
    /// one content). A new record is written on a thread of its own when
    /// one can be started ([`Recorder::is_being_written`] says so until
    /// [`Recorder::wait_for_records`]); else here.
    pub fn record(
        &mut self,
        digest: Digest,
        text: impl FnOnce() -> String,
    ) -> Result<(), RecordError> {
        if !self.present.contains(&digest) && !self.used.contains(&digest) {
            if self.writing.is_none() {
                self.writing = self
                    .dir
                    .fd()
                    .try_clone()
                    .and_then(RecordWriter::start)
                    .ok()
                    .map(|writer| {
                        Box::new(Writing {
                            writer,
                            queued: HashSet::new(),
                        })
                    });
            }
            match &mut self.writing {
                Some(writing) => {
                    let name = digest.to_string();
                    let temporary = temporary_name(&name);
                    writing.writer.write(name, temporary, text());
                    writing.queued.insert(digest);
                }
                None => write_record(&self.dir, &digest.to_string(), text().as_bytes())?,
            }
        }
        self.used.insert(digest);
        Ok(())
    }

    /// Whether the record `digest` is queued and not yet known to be in
    /// place: a drop-in naming it waits for [`Recorder::wait_for_records`].
    pub fn is_being_written(&self, digest: Digest) -> bool {
        self.writing
            .as_ref()
            .is_some_and(|writing| writing.queued.contains(&digest))
    }

    /// Waits until the queued records are written; those that could not
    /// be, and why (no unit of this run names them any more).
    pub fn wait_for_records(&mut self) -> Vec<(Digest, RecordError)> {
        let Some(writing) = self.writing.take() else {
            return Vec::new();
        };
        let failed: Vec<(Digest, RecordError)> = writing
            .writer
            .finish()
            .into_iter()
            .filter_map(|(name, e)| {
                let digest = Digest::parse(&name)?;
                Some((digest, error(&self.dir.path().join(&name), e.to_string())))
            })
            .collect();
        for (digest, _) in &failed {
            self.used.remove(digest);
        }
        failed
    }

    /// Keeps the record `digest` for this run's unit, when it is there.
    fn reuse(&mut self, digest: Digest) -> bool {
        let there = self.present.contains(&digest) || self.used.contains(&digest);
        if there {
            self.used.insert(digest);
        }
        there
    }

    /// Removes the records of the last runs that no unit of this one names
    /// (a view mounted from one keeps its layer: it needs it no more).
    /// Returns how many.
    pub fn remove_unused(&self) -> usize {
        for name in &self.stale {
            let _ = unlinkat(self.dir.fd(), name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        self.present
            .iter()
            .filter(|digest| !self.used.contains(*digest))
            .filter(|digest| {
                unlinkat(
                    self.dir.fd(),
                    digest.to_string().as_str(),
                    UnlinkatFlags::NoRemoveDir,
                )
                .is_ok()
            })
            .count()
    }

    /// How many records this run's units name.
    pub fn used(&self) -> usize {
        self.used.len()
    }
}

/// Why the running kernel cannot mount a view, if it cannot: overlayfs
/// must be there (built in, loaded, or a module it can load) and follow
/// redirects and metacopy (Linux 4.19).
fn kernel_cannot_mount_views() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version < (4, 19) {
        return Some(format!(
            "Linux {release} is older than 4.19 (overlayfs metacopy)"
        ));
    }
    let listed = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|text| text.lines().any(|l| l.trim_end().ends_with("\toverlay")));
    let module = || {
        std::path::Path::new("/sys/module/overlay").exists()
            || std::fs::read_to_string(format!("/lib/modules/{release}/modules.dep"))
                .is_ok_and(|text| text.contains("/overlay.ko"))
    };
    if !listed && !module() {
        return Some("the kernel has no overlayfs (not built in, no module)".to_owned());
    }
    None
}

/// A view's layer carries `trusted.*` attributes, which take
/// `CAP_SYS_ADMIN` in the first user namespace (not in a container's own)
/// and a file system that keeps them: tried on `dir` itself (nothing is
/// created that a killed run could leave behind).
fn trusted_attributes_work(dir: &ScratchDir) -> Result<(), RecordError> {
    let key = CString::new("trusted.nix-confinement-probe").expect("no NUL");
    let fd = dir.fd().as_raw_fd();
    // SAFETY: an open descriptor, a NUL-terminated name, one byte of value.
    let set = unsafe { libc::fsetxattr(fd, key.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    let errno = Errno::last();
    // SAFETY: as above.
    unsafe { libc::fremovexattr(fd, key.as_ptr()) };
    if set == 0 {
        Ok(())
    } else {
        Err(RecordError::NoTrustedAttributes {
            path: dir.path().to_owned(),
            errno,
        })
    }
}

/// What a directory of records holds: the records, and the temporary
/// files a killed run left.
#[derive(Default)]
struct Listing {
    records: HashSet<Digest>,
    stale: Vec<String>,
}

/// The records in `dir`. Anything there that a run or a view unit did not
/// make means the directory is not ours alone: refused, nothing removed.
fn list_records(dir: &ScratchDir) -> Result<Listing, RecordError> {
    let shown = dir.path();
    let mut listing = Dir::openat(
        dir.fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| error(shown, e.desc()))?;
    let mut found = Listing::default();
    for entry in listing.iter() {
        let entry = entry.map_err(|e| error(shown, e.desc()))?;
        let Ok(name) = entry.file_name().to_str() else {
            return Err(error(shown, "holds a name that is not UTF-8"));
        };
        if name == "." || name == ".." {
            continue;
        }
        let kind = entry.file_type().or_else(|| {
            fstatat(dir.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .ok()
                .map(|stat| match stat.st_mode & libc::S_IFMT {
                    libc::S_IFDIR => Type::Directory,
                    libc::S_IFREG => Type::File,
                    _ => Type::Symlink,
                })
        });
        match (Digest::parse(name), kind) {
            (Some(digest), Some(Type::File)) => {
                found.records.insert(digest);
            }
            // A record being written (by a run that was killed: one run at
            // a time), or a layer being staged by a view unit (a mount
            // point, removed when the view is mounted).
            _ if is_temporary(name, ".", ".tmp") && kind == Some(Type::File) => {
                found.stale.push(name.to_owned());
            }
            _ if is_temporary(name, ".layer-", "") && kind == Some(Type::Directory) => {}
            _ => {
                return Err(error(
                    shown,
                    format!(
                        "holds {name:?}, which views did not make; views are recorded only \
                         in a directory of their own"
                    ),
                ));
            }
        }
    }
    Ok(found)
}

/// `<prefix><digest><sep><pid><suffix>`: what a process with that pid
/// writes or stages for a digest.
fn is_temporary(name: &str, prefix: &str, suffix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .and_then(|rest| rest.get(..32).zip(rest.get(33..)))
        .is_some_and(|(digest, pid)| {
            Digest::parse(digest).is_some()
                && !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Where the record `name` is written before it is renamed into place: a
/// name [`is_temporary`] recognises, with this process's id.
fn temporary_name(name: &str) -> String {
    format!(".{name}.{}.tmp", std::process::id())
}

/// Writes a record whole: a temporary file renamed into place, mode 0600.
fn write_record(dir: &ScratchDir, name: &str, bytes: &[u8]) -> Result<(), RecordError> {
    use std::io::Write;
    crate::scratch::write_whole_at(dir.fd(), name, &temporary_name(name), |file| {
        file.write_all(bytes)
    })
    .map(drop)
    .map_err(|e| error(&dir.path().join(name), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_told_apart_from_strangers() {
        let digest = "0123456789abcdef0123456789abcdef";
        assert!(is_temporary(&format!(".{digest}.42.tmp"), ".", ".tmp"));
        assert!(is_temporary(&format!(".layer-{digest}-42"), ".layer-", ""));
        assert!(!is_temporary(&format!(".{digest}.tmp"), ".", ".tmp"));
        assert!(!is_temporary(&format!(".{digest}.4x.tmp"), ".", ".tmp"));
        assert!(!is_temporary(".layer-abc-1", ".layer-", ""));
        assert!(!is_temporary(&format!("{digest}.42.tmp"), ".", ".tmp"));
    }
}
