//! Reading the file system below a root directory as if it were `/`, the way
//! `systemctl --root` does: absolute symlink targets are resolved inside the
//! root and `..` never climbs out of it. Paths handed in and out are logical
//! (`/etc/…`); only the functions here join them to the root.

use camino::{Utf8Path, Utf8PathBuf};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;

/// The kernel's own limit on symlinks followed while resolving one path.
const MAX_SYMLINKS: usize = 40;

#[derive(Debug)]
pub enum ResolveError {
    /// A component does not exist (the path as far as it was resolved).
    NotFound(Utf8PathBuf),
    /// More than 40 symlinks: a loop.
    TooManyLinks(Utf8PathBuf),
    /// A symlink target that is not UTF-8.
    NotUtf8(Utf8PathBuf),
    /// A component that is not a directory but has more components after it.
    NotADirectory(Utf8PathBuf),
    Io(Utf8PathBuf, io::Error),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotFound(p) => write!(f, "{p} does not exist"),
            ResolveError::TooManyLinks(p) => write!(f, "too many levels of symbolic links at {p}"),
            ResolveError::NotUtf8(p) => {
                write!(f, "symbolic link {p} has a target that is not UTF-8")
            }
            ResolveError::NotADirectory(p) => write!(f, "{p} is not a directory"),
            ResolveError::Io(p, e) => write!(f, "{p}: {e}"),
        }
    }
}

impl std::error::Error for ResolveError {}

/// The error opening the path would have given.
impl From<ResolveError> for io::Error {
    fn from(error: ResolveError) -> io::Error {
        match error {
            ResolveError::NotFound(_) => io::Error::from_raw_os_error(libc::ENOENT),
            ResolveError::TooManyLinks(_) => io::Error::from_raw_os_error(libc::ELOOP),
            ResolveError::NotADirectory(_) => io::Error::from_raw_os_error(libc::ENOTDIR),
            ResolveError::NotUtf8(_) => io::Error::other(error.to_string()),
            ResolveError::Io(_, error) => error,
        }
    }
}

/// A root directory that logical paths are resolved under.
///
/// A `Root` remembers what it found at each real path while resolving (the
/// same directories — `/etc`, `/etc/systemd`, … — are on the way to every
/// unit file): it is a snapshot for one run, not for a file system that
/// changes under it.
#[derive(Debug, Clone)]
pub struct Root {
    dir: Utf8PathBuf,
    seen: RefCell<HashMap<Utf8PathBuf, Entry>>,
}

impl PartialEq for Root {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir
    }
}
impl Eq for Root {}

/// What `lstat()` (and `readlink()`) found at a real path.
#[derive(Debug, Clone)]
enum Entry {
    /// A symlink and its target (`None`: not UTF-8).
    Link(Option<Utf8PathBuf>),
    Directory,
    Other,
    Missing,
    /// A component on the way is not a directory.
    NotADirectory,
}

impl Root {
    pub fn new(dir: impl Into<Utf8PathBuf>) -> Self {
        Root {
            dir: dir.into(),
            seen: RefCell::default(),
        }
    }

    /// `lstat()` and, for a link, `readlink()` of `real`, once per path.
    fn look_at(&self, real: &Utf8Path) -> io::Result<Entry> {
        if let Some(found) = self.seen.borrow().get(real) {
            return Ok(found.clone());
        }
        let found = match std::fs::symlink_metadata(real) {
            Ok(meta) if meta.file_type().is_symlink() => {
                Entry::Link(Utf8PathBuf::from_path_buf(std::fs::read_link(real)?).ok())
            }
            Ok(meta) if meta.is_dir() => Entry::Directory,
            Ok(_) => Entry::Other,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Entry::Missing,
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Entry::NotADirectory,
            Err(e) => return Err(e),
        };
        self.seen
            .borrow_mut()
            .insert(real.to_owned(), found.clone());
        Ok(found)
    }

    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// The real path of a logical path, without resolving anything.
    pub fn join(&self, logical: &Utf8Path) -> Utf8PathBuf {
        crate::diag::under_root(&self.dir, logical)
    }

    /// Resolves every symlink in `logical` (which must be absolute) inside the
    /// root, like `readlink -e`: the result is logical, absolute, free of
    /// `.`/`..` and links, and exists.
    pub fn canonicalize(&self, logical: &Utf8Path) -> Result<Utf8PathBuf, ResolveError> {
        self.resolve(logical)
    }

    /// Where to open `logical`: its real path, every symlink in it resolved
    /// inside the root ([`Root::canonicalize`] joined to the root). Opening
    /// [`Root::join`] of a logical path would let the kernel follow an
    /// absolute link, or `..`, out of the root.
    /// Errors are the ones opening it would give (`ENOENT`, `ELOOP`, …).
    pub fn real(&self, logical: &Utf8Path) -> io::Result<Utf8PathBuf> {
        Ok(self.join(&self.canonicalize(logical)?))
    }

    /// Like [`Root::canonicalize`], but the last component need not exist
    /// and is not followed when it is a symlink (`readlink -f` of the parent,
    /// joined with the name). Used to find where a directory entry lives.
    pub fn canonicalize_parent(&self, logical: &Utf8Path) -> Result<Utf8PathBuf, ResolveError> {
        match (logical.parent(), logical.file_name()) {
            (Some(parent), Some(name)) => Ok(self.canonicalize(parent)?.join(name)),
            _ => self.canonicalize(logical),
        }
    }

    fn resolve(&self, logical: &Utf8Path) -> Result<Utf8PathBuf, ResolveError> {
        let mut resolved = Utf8PathBuf::from("/");
        // Components still to walk, in reverse so that a link's target can be
        // pushed in front of what follows it.
        let mut pending: Vec<String> = components_reversed(logical.as_str());
        let mut links_followed = 0;
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            let candidate = resolved.join(&component);
            let real = self.join(&candidate);
            match self.look_at(&real) {
                Ok(Entry::Link(target)) => {
                    links_followed += 1;
                    if links_followed > MAX_SYMLINKS {
                        return Err(ResolveError::TooManyLinks(candidate));
                    }
                    let target = target.ok_or_else(|| ResolveError::NotUtf8(candidate.clone()))?;
                    if target.is_absolute() {
                        resolved = Utf8PathBuf::from("/");
                    }
                    pending.extend(components_reversed(target.as_str()));
                }
                Ok(Entry::Directory) => resolved = candidate,
                Ok(Entry::Other) => {
                    if !pending.is_empty() && has_real_components(&pending) {
                        return Err(ResolveError::NotADirectory(candidate));
                    }
                    resolved = candidate;
                }
                Ok(Entry::Missing) => return Err(ResolveError::NotFound(candidate)),
                Ok(Entry::NotADirectory) => return Err(ResolveError::NotADirectory(resolved)),
                Err(e) => return Err(ResolveError::Io(candidate, e)),
            }
        }
        Ok(resolved)
    }
}

/// The components of `path`, last first: a walk pops the next one, and
/// pushes a link's target in front of what follows it.
pub(crate) fn components_reversed(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_owned)
        .collect()
}

fn has_real_components(pending: &[String]) -> bool {
    pending.iter().any(|c| c != ".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp_root(name: &str) -> (Root, Utf8PathBuf) {
        let dir = crate::test_dirs::fresh(&format!("rootfs-{name}"));
        (Root::new(dir.clone()), dir)
    }

    #[test]
    fn absolute_links_resolve_inside_the_root() {
        let (root, dir) = temp_root("abs");
        std::fs::create_dir_all(dir.join("nix/store/aaa-bash/bin")).unwrap();
        std::fs::write(dir.join("nix/store/aaa-bash/bin/bash"), "").unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        symlink("/nix/store/aaa-bash/bin/bash", dir.join("bin/sh")).unwrap();
        assert_eq!(
            root.canonicalize(Utf8Path::new("/bin/sh")).unwrap(),
            "/nix/store/aaa-bash/bin/bash"
        );
    }

    #[test]
    fn relative_links_and_dotdot_never_leave_the_root() {
        let (root, dir) = temp_root("rel");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("target"), "").unwrap();
        symlink("../../../../../target", dir.join("a/b/link")).unwrap();
        assert_eq!(
            root.canonicalize(Utf8Path::new("/a/b/link")).unwrap(),
            "/target"
        );
        assert_eq!(
            root.canonicalize(Utf8Path::new("/a/./b/../b/link"))
                .unwrap(),
            "/target"
        );
    }

    #[test]
    fn loops_and_missing_targets_are_errors() {
        let (root, dir) = temp_root("loop");
        symlink("/loop2", dir.join("loop1")).unwrap();
        symlink("/loop1", dir.join("loop2")).unwrap();
        symlink("/nowhere", dir.join("dangling")).unwrap();
        assert!(matches!(
            root.canonicalize(Utf8Path::new("/loop1")),
            Err(ResolveError::TooManyLinks(_))
        ));
        assert!(matches!(
            root.canonicalize(Utf8Path::new("/dangling")),
            Err(ResolveError::NotFound(p)) if p == "/nowhere"
        ));
    }

    #[test]
    fn a_file_in_the_middle_is_not_a_directory() {
        let (root, dir) = temp_root("notdir");
        std::fs::write(dir.join("file"), "").unwrap();
        assert!(matches!(
            root.canonicalize(Utf8Path::new("/file/x")),
            Err(ResolveError::NotADirectory(_))
        ));
    }
}
