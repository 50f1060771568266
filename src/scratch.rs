//! The generator's own scratch directories (the closure cache, the view
//! records), found inside the root like every path it reads and opened so
//! that nothing outside them can be written to: links are followed here,
//! never by the kernel, so one swapped in while the path is walked cannot
//! lead out of the root, and the directory found is then used only through
//! its descriptor. What is accepted: see [`ScratchDir::create`].

use crate::rootfs::{Root, components_reversed};
use camino::{Utf8Path, Utf8PathBuf};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{Mode, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};

/// Writes the file `name` in the scratch directory `dir` whole: `write`
/// fills a new file `temporary` (mode 0600, never one already there), which
/// is then renamed over `name`, so that a reader finds the old file or the
/// new one, never a part. The temporary file is removed when anything
/// fails. Returns the file as it is in place (a rename changes its stamp).
/// No fsync: scratch files live in `/run`, which does not outlive a crash.
pub fn write_whole_at(
    dir: &impl AsFd,
    name: &str,
    temporary: &str,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<std::fs::File> {
    let result = (|| {
        let file = openat(
            dir,
            temporary,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        let mut file = std::fs::File::from(file);
        write(&mut file)?;
        renameat(dir, temporary, dir, name)?;
        Ok(file)
    })();
    if result.is_err() {
        let _ = unlinkat(dir, temporary, UnlinkatFlags::NoRemoveDir);
    }
    result
}

/// The kernel's own limit on symlinks followed while resolving one path.
const MAX_SYMLINKS: usize = 40;

/// Why a scratch directory could not be found or made: the logical path
/// involved and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchError {
    pub path: Utf8PathBuf,
    pub message: String,
}

impl fmt::Display for ScratchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ScratchError {}

fn error(path: &Utf8Path, message: impl Into<String>) -> ScratchError {
    ScratchError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// A directory of the generator's own, open.
#[derive(Debug)]
pub struct ScratchDir {
    dir: OwnedFd,
    /// Where it was found: logical, links resolved.
    path: Utf8PathBuf,
    /// `st_dev` and `st_ino`, to tell whether two are one directory.
    identity: (u64, u64),
}

impl ScratchDir {
    /// The directory at the logical `path` inside `root`, or `Ok(None)` when
    /// it (or a directory on the way to it) does not exist. Reads only.
    pub fn find(root: &Root, path: &Utf8Path) -> Result<Option<ScratchDir>, ScratchError> {
        walk(root, path, false)
    }

    /// The directory at the logical `path` inside `root`, made (mode 0700,
    /// and the directories on the way) when missing.
    ///
    /// `path` is resolved the way link targets are under `--root`: `..`
    /// stops at the root and an absolute link starts again from it. Each
    /// component is opened relative to the directory before it (`openat()`
    /// with `O_NOFOLLOW`) and links are read and followed here; later
    /// writes go through the descriptor (`*at()` calls), so a rename or a
    /// link made afterwards cannot redirect them. What is accepted:
    /// - the directory itself is not a link, belongs to the generator's user
    ///   and no one else can write to it;
    /// - a link on the way is followed only when it belongs to the
    ///   generator's user or to root: one planted by another user (in
    ///   `/tmp`, say) is not (in the spirit of the kernel's
    ///   `protected_symlinks`).
    ///
    /// Directories made on the way are the generator's alone too (mode
    /// 0700).
    pub fn create(root: &Root, path: &Utf8Path) -> Result<ScratchDir, ScratchError> {
        walk(root, path, true)?.ok_or_else(|| error(path, "could not be made"))
    }

    /// The directory, to use with `*at()` calls.
    pub fn fd(&self) -> &OwnedFd {
        &self.dir
    }

    /// Where it was found inside the root (links resolved).
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// Whether `other` is the same directory.
    pub fn is(&self, other: &ScratchDir) -> bool {
        self.identity == other.identity
    }
}

/// The directory and the name of a scratch file at the logical `path`.
pub fn split_file(path: &Utf8Path) -> Result<(&Utf8Path, &str), ScratchError> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(error(path, "names no file")),
    }
}

fn walk(root: &Root, path: &Utf8Path, create: bool) -> Result<Option<ScratchDir>, ScratchError> {
    let root_dir = nix::fcntl::open(
        root.dir().as_std_path(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| error(root.dir(), e.desc()))?;
    let us = nix::unistd::geteuid().as_raw();
    // The directories walked, the root first, each with its logical path:
    // `..` goes back to the one before, never above the root.
    let mut walked: Vec<(OwnedFd, Utf8PathBuf)> = vec![(root_dir, Utf8PathBuf::from("/"))];
    // Components still to walk, in reverse, so that a link's target can be
    // put in front of what follows it.
    let mut pending = components_reversed(path.as_str());
    let mut links_followed = 0;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "." => continue,
            ".." => {
                if walked.len() > 1 {
                    walked.pop();
                }
                continue;
            }
            _ => {}
        }
        let is_last = pending.is_empty();
        let (parent, parent_path) = walked.last().expect("the root is never popped");
        let logical = parent_path.join(&component);
        let opened = openat(
            parent,
            component.as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        match opened {
            Ok(dir) => walked.push((dir, logical)),
            Err(Errno::ENOENT) if !create => return Ok(None),
            Err(Errno::ENOENT) => {
                match mkdirat(parent, component.as_str(), Mode::from_bits_truncate(0o700)) {
                    // Made here (or by someone else meanwhile): opened again,
                    // and checked like any other.
                    Ok(()) | Err(Errno::EEXIST) => pending.push(component),
                    Err(e) => return Err(error(&logical, format!("cannot be made: {}", e.desc()))),
                }
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let found = fstatat(parent, component.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| error(&logical, e.desc()))?;
                if found.st_mode & libc::S_IFMT != libc::S_IFLNK {
                    return Err(error(&logical, "not a directory"));
                }
                if is_last {
                    return Err(error(
                        &logical,
                        "a symbolic link; the directory itself must not be one",
                    ));
                }
                if found.st_uid != us && found.st_uid != 0 {
                    return Err(error(
                        &logical,
                        format!(
                            "a symbolic link of uid {}; only links of root or of uid {us} are followed",
                            found.st_uid
                        ),
                    ));
                }
                links_followed += 1;
                if links_followed > MAX_SYMLINKS {
                    return Err(error(&logical, "too many levels of symbolic links"));
                }
                let target = readlinkat(parent, component.as_str())
                    .map_err(|e| error(&logical, e.desc()))?;
                let target = target
                    .into_string()
                    .map_err(|_| error(&logical, "a symbolic link whose target is not UTF-8"))?;
                if target.starts_with('/') {
                    walked.truncate(1);
                }
                pending.extend(components_reversed(&target));
            }
            Err(e) => return Err(error(&logical, e.desc())),
        }
    }
    let (found, path) = walked.pop().expect("the root is never popped");
    // Opened for reading (to list it): `.` of the descriptor walked to is
    // that directory, whatever its path has become meanwhile.
    let dir = openat(
        &found,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| error(&path, e.desc()))?;
    let stat = fstat(&dir).map_err(|e| error(&path, e.desc()))?;
    if stat.st_uid != us || stat.st_mode & 0o022 != 0 {
        return Err(error(
            &path,
            format!(
                "owned by uid {} with mode {:o}; only a directory of uid {us} that no one else can write is used",
                stat.st_uid,
                stat.st_mode & 0o7777
            ),
        ));
    }
    Ok(Some(ScratchDir {
        dir,
        path,
        identity: (stat.st_dev, stat.st_ino),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// A root inside a directory that also holds files outside it.
    fn temp_root(name: &str) -> (Root, Utf8PathBuf) {
        let base = crate::test_dirs::fresh(&format!("scratch-{name}"));
        std::fs::create_dir_all(base.join("root")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        (Root::new(base.join("root")), base)
    }

    fn write_and_check(dir: &ScratchDir) {
        crate::output::write_atomically(dir.fd(), "probe", "x", |message| {
            crate::output::OutputError {
                path: dir.path().join("probe"),
                message,
            }
        })
        .unwrap();
    }

    #[test]
    fn dotdot_and_absolute_links_stay_inside_the_root() {
        let (root, base) = temp_root("inside");
        let dir = ScratchDir::create(&root, Utf8Path::new("/../../../outside/scratch")).unwrap();
        assert_eq!(dir.path(), "/outside/scratch");
        write_and_check(&dir);
        assert!(base.join("root/outside/scratch/probe").is_file());
        assert!(!base.join("outside/scratch").exists());
        // An absolute link to the directory outside, and a relative one
        // climbing out: both resolve inside the root.
        symlink(base.join("outside"), base.join("root/abs")).unwrap();
        symlink("../../../../outside", base.join("root/rel")).unwrap();
        let inside_abs = base.join("outside/x");
        for (link, expected) in [("/abs/x", inside_abs.as_str()), ("/rel/y", "/outside/y")] {
            let dir = ScratchDir::create(&root, Utf8Path::new(link)).unwrap();
            assert_eq!(dir.path(), expected);
            write_and_check(&dir);
            let real = root.join(Utf8Path::new(expected)).join("probe");
            assert!(real.is_file(), "{real}");
        }
        assert_eq!(
            std::fs::read_dir(base.join("outside")).unwrap().count(),
            0,
            "nothing was made outside the root"
        );
        let mode = std::fs::metadata(base.join("root/outside/y"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn find_makes_nothing() {
        let (root, base) = temp_root("find");
        assert!(
            ScratchDir::find(&root, Utf8Path::new("/run/x"))
                .unwrap()
                .is_none()
        );
        assert!(!base.join("root/run").exists());
        let made = ScratchDir::create(&root, Utf8Path::new("/run/x")).unwrap();
        let found = ScratchDir::find(&root, Utf8Path::new("/run/./x"))
            .unwrap()
            .unwrap();
        assert!(found.is(&made));
        let other = ScratchDir::create(&root, Utf8Path::new("/run/y")).unwrap();
        assert!(!other.is(&made));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_directory_itself_is_never_a_link_nor_shared() {
        let (root, base) = temp_root("refused");
        std::fs::create_dir_all(base.join("root/real")).unwrap();
        symlink("/real", base.join("root/link")).unwrap();
        let error = ScratchDir::create(&root, Utf8Path::new("/link"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/link: a symbolic link"), "{error}");
        std::fs::set_permissions(
            base.join("root/real"),
            std::fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        let error = ScratchDir::create(&root, Utf8Path::new("/real"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/real: owned by uid"), "{error}");
        assert!(error.contains("mode 1777"), "{error}");
        std::fs::write(base.join("root/file"), "").unwrap();
        let error = ScratchDir::create(&root, Utf8Path::new("/file/x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/file: not a directory"), "{error}");
        symlink("/loop", base.join("root/loop")).unwrap();
        let error = ScratchDir::create(&root, Utf8Path::new("/loop/x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("too many levels"), "{error}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_link_of_another_user_is_not_followed() {
        if !nix::unistd::geteuid().is_root() {
            return; // only root can give a link away
        }
        let (root, base) = temp_root("owner");
        std::fs::create_dir_all(base.join("root/real")).unwrap();
        symlink("/real", base.join("root/link")).unwrap();
        std::os::unix::fs::lchown(base.join("root/link"), Some(65534), Some(65534)).unwrap();
        let error = ScratchDir::create(&root, Utf8Path::new("/link/x"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/link: a symbolic link of uid 65534"),
            "{error}"
        );
        assert!(!base.join("root/real/x").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
