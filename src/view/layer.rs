//! The metadata layer of a closure view: a directory whose entries stand for
//! the closure's store paths, laid over the store by a read-only overlayfs.
//! It holds only metadata (redirects and metacopy attributes point into the
//! store directory below it), and the kernel looks names up lazily, so a
//! service starts as fast with a large closure as with a small one; only
//! building the layer is linear. See [`build`] for what it holds.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};

/// The directory of the layer that is bound at the store's place.
pub const STORE_ENTRY: &str = "s";

const OPAQUE: &str = "trusted.overlay.opaque";
const REDIRECT: &str = "trusted.overlay.redirect";
const METACOPY: &str = "trusted.overlay.metacopy";

/// What went wrong building a layer: the store entry or layer entry
/// involved and the system's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerError {
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for LayerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for LayerError {}

fn error(name: &str, what: &str, errno: Errno) -> LayerError {
    LayerError {
        name: name.to_owned(),
        message: format!("{what}: {}", errno.desc()),
    }
}

/// How many entries of each kind a layer holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    pub directories: usize,
    pub files: usize,
    pub symlinks: usize,
}

/// Builds the layer in `layer` (an empty directory on a file system that
/// keeps `trusted.*` extended attributes, which takes `CAP_SYS_ADMIN`) for
/// the store entries `names` of the store directory `store`. Each entry's
/// mode, owner and modification time are copied: the view shows the layer's
/// (a merged directory's attributes are its upper layer's). A name that is
/// not in the store, or is neither a directory, a regular file nor a
/// symlink, is an error: the view would not be the closure.
///
/// The layer holds one directory, [`STORE_ENTRY`], marked opaque, so that
/// nothing of the store shows through it but what it names. For each store
/// path it holds an entry of the same name: a directory that redirects to
/// the store's (`trusted.overlay.redirect`), a symlink copied as it is, or
/// a regular file as an empty sparse file of the same size that takes its
/// data from the store's (`trusted.overlay.metacopy` and the redirect).
/// Redirects are absolute: the lower layer below this one is the store
/// directory itself, so `/<name>` is `<store>/<name>` whatever the store's
/// mounts look like above it.
pub fn build(
    layer: BorrowedFd<'_>,
    store: BorrowedFd<'_>,
    names: &[&str],
) -> Result<Built, LayerError> {
    mkdir(layer, STORE_ENTRY, 0o755)?;
    let top = open_directory(layer, STORE_ENTRY)?;
    set_xattr(top.as_fd(), STORE_ENTRY, OPAQUE, b"y")?;
    // A few system calls per entry, each entry on its own: a large closure
    // is built on several threads, which the first start of its unit waits
    // for (see benches/README.md).
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(names.len() / MIN_ENTRIES_PER_THREAD)
        .max(1);
    if threads == 1 {
        return build_entries(top.as_fd(), store, names);
    }
    let results: Vec<Result<Built, LayerError>> = std::thread::scope(|scope| {
        let top = top.as_fd();
        let workers: Vec<_> = names
            .chunks(names.len().div_ceil(threads))
            .map(|part| {
                let worker = std::thread::Builder::new()
                    .spawn_scoped(scope, move || build_entries(top, store, part));
                (part, worker)
            })
            .collect();
        workers
            .into_iter()
            .map(|(part, worker)| match worker {
                Ok(worker) => worker.join().unwrap_or_else(|_| {
                    Err(LayerError {
                        name: STORE_ENTRY.into(),
                        message: "a thread building the layer failed".into(),
                    })
                }),
                // No thread to be had (a task limit): built here.
                Err(_) => build_entries(top, store, part),
            })
            .collect()
    });
    let mut built = Built::default();
    for part in results {
        let part = part?;
        built.directories += part.directories;
        built.files += part.files;
        built.symlinks += part.symlinks;
    }
    Ok(built)
}

/// At most this many threads build one layer.
const MAX_THREADS: usize = 4;
/// A thread of its own for no fewer entries than this.
const MIN_ENTRIES_PER_THREAD: usize = 256;

/// The entries `names` of the layer's store directory `top` (see [`build`]).
fn build_entries(
    top: BorrowedFd<'_>,
    store: BorrowedFd<'_>,
    names: &[&str],
) -> Result<Built, LayerError> {
    let mut built = Built::default();
    for &name in names {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(LayerError {
                name: name.to_owned(),
                message: "not the name of a store entry".into(),
            });
        }
        let stat = fstatat(store, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| error(name, "in the store", e))?;
        let redirect = format!("/{name}");
        match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => {
                mkdir(top, name, 0o700)?;
                let entry = open_directory(top, name)?;
                set_xattr(entry.as_fd(), name, REDIRECT, redirect.as_bytes())?;
                copy_attributes(entry.as_fd(), name, &stat)?;
                built.directories += 1;
            }
            SFlag::S_IFREG => {
                let entry = openat(
                    top,
                    name,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| error(name, "creating the layer's file", e))?;
                nix::unistd::ftruncate(&entry, stat.st_size)
                    .map_err(|e| error(name, "sizing the layer's file", e))?;
                set_xattr(entry.as_fd(), name, METACOPY, b"")?;
                set_xattr(entry.as_fd(), name, REDIRECT, redirect.as_bytes())?;
                copy_attributes(entry.as_fd(), name, &stat)?;
                built.files += 1;
            }
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(store, name)
                    .map_err(|e| error(name, "reading the symlink", e))?;
                nix::unistd::symlinkat(target.as_os_str(), top, name)
                    .map_err(|e| error(name, "copying the symlink", e))?;
                built.symlinks += 1;
            }
            _ => {
                return Err(LayerError {
                    name: name.to_owned(),
                    message: "neither a directory, a regular file nor a symlink".into(),
                });
            }
        }
    }
    Ok(built)
}

fn mkdir(parent: BorrowedFd<'_>, name: &str, mode: u32) -> Result<(), LayerError> {
    nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(mode))
        .map_err(|e| error(name, "creating the layer's directory", e))
}

fn open_directory(parent: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, LayerError> {
    openat(
        parent,
        name,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| error(name, "opening the layer's directory", e))
}

fn set_xattr(fd: BorrowedFd<'_>, name: &str, key: &str, value: &[u8]) -> Result<(), LayerError> {
    let key_c = CString::new(key).expect("no NUL in attribute names");
    // SAFETY: `fd` is open, `key_c` is NUL-terminated and `value` is valid
    // for `value.len()` bytes.
    let result = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            key_c.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(error(name, &format!("setting {key}"), Errno::last()))
    }
}

/// Mode, owner and modification time of the store entry on the layer's.
fn copy_attributes(fd: BorrowedFd<'_>, name: &str, stat: &FileStat) -> Result<(), LayerError> {
    nix::unistd::fchown(
        fd,
        Some(nix::unistd::Uid::from_raw(stat.st_uid)),
        Some(nix::unistd::Gid::from_raw(stat.st_gid)),
    )
    .map_err(|e| error(name, "owning the layer's entry", e))?;
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(stat.st_mode & 0o7777))
        .map_err(|e| error(name, "setting the layer's entry's mode", e))?;
    let modified = nix::sys::time::TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec);
    nix::sys::stat::futimens(fd, &modified, &modified)
        .map_err(|e| error(name, "setting the layer's entry's time", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    fn scratch(name: &str) -> PathBuf {
        let dir = crate::test_dirs::fresh(&format!("layer-{name}")).into_std_path_buf();
        std::fs::create_dir_all(dir.join("store")).unwrap();
        std::fs::create_dir_all(dir.join("layer")).unwrap();
        dir
    }

    fn open(path: &Path) -> OwnedFd {
        openat(
            nix::fcntl::AT_FDCWD,
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    fn xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
        let path_c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let key_c = CString::new(key).unwrap();
        let mut buffer = vec![0u8; 256];
        // SAFETY: valid C strings and a buffer of the given length.
        let n = unsafe {
            libc::lgetxattr(
                path_c.as_ptr(),
                key_c.as_ptr(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        };
        (n >= 0).then(|| buffer[..n as usize].to_vec())
    }

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "trusted.* attributes need CAP_SYS_ADMIN: run the tests as root"
        );
    }

    #[test]
    fn each_kind_of_store_entry_gets_its_layer_entry() {
        require_root();
        let dir = scratch("kinds");
        let store = dir.join("store");
        std::fs::create_dir_all(store.join("aaa-dir/bin")).unwrap();
        std::fs::write(store.join("aaa-dir/bin/prog"), "x").unwrap();
        std::fs::set_permissions(
            store.join("aaa-dir"),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        std::fs::write(store.join("bbb-file"), "twelve bytes").unwrap();
        std::fs::set_permissions(
            store.join("bbb-file"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        std::os::unix::fs::symlink("/nix/store/aaa-dir", store.join("ccc-link")).unwrap();
        std::fs::create_dir(store.join("ddd-not-in-the-closure")).unwrap();
        let built = build(
            open(&dir.join("layer")).as_fd(),
            open(&store).as_fd(),
            &["aaa-dir", "bbb-file", "ccc-link"],
        )
        .unwrap();
        assert_eq!(
            built,
            Built {
                directories: 1,
                files: 1,
                symlinks: 1
            }
        );
        let top = dir.join("layer").join(STORE_ENTRY);
        assert_eq!(xattr(&top, OPAQUE).as_deref(), Some(&b"y"[..]));
        let mut names: Vec<String> = std::fs::read_dir(&top)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["aaa-dir", "bbb-file", "ccc-link"]);

        let directory = top.join("aaa-dir");
        assert_eq!(
            xattr(&directory, REDIRECT).as_deref(),
            Some(&b"/aaa-dir"[..])
        );
        assert_eq!(
            std::fs::read_dir(&directory).unwrap().count(),
            0,
            "the layer's directory is empty: the store's shows through"
        );
        let (layer_meta, store_meta) = (
            std::fs::metadata(&directory).unwrap(),
            std::fs::metadata(store.join("aaa-dir")).unwrap(),
        );
        assert_eq!(layer_meta.mode(), store_meta.mode());
        assert_eq!(
            (layer_meta.mtime(), layer_meta.mtime_nsec()),
            (store_meta.mtime(), store_meta.mtime_nsec())
        );

        let file = top.join("bbb-file");
        assert_eq!(xattr(&file, REDIRECT).as_deref(), Some(&b"/bbb-file"[..]));
        assert_eq!(xattr(&file, METACOPY).as_deref(), Some(&b""[..]));
        let file_meta = std::fs::metadata(&file).unwrap();
        assert_eq!(file_meta.len(), 12);
        assert_eq!(file_meta.blocks(), 0, "sparse: no data of its own");
        assert_eq!(file_meta.mode() & 0o7777, 0o444);

        let link = top.join("ccc-link");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/nix/store/aaa-dir")
        );
        std::fs::set_permissions(
            store.join("aaa-dir"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_large_layer_is_whole_and_its_errors_named_whichever_thread_meets_them() {
        require_root();
        let dir = scratch("large");
        let store = dir.join("store");
        let names: Vec<String> = (0..1200).map(|i| format!("{i:04}-path")).collect();
        for (i, name) in names.iter().enumerate() {
            if i % 3 == 0 {
                std::fs::write(store.join(name), "data").unwrap();
            } else {
                std::fs::create_dir(store.join(name)).unwrap();
            }
        }
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let built = build(open(&dir.join("layer")).as_fd(), open(&store).as_fd(), &all).unwrap();
        assert_eq!(
            (built.files, built.directories, built.symlinks),
            (400, 800, 0)
        );
        let top = dir.join("layer").join(STORE_ENTRY);
        assert_eq!(std::fs::read_dir(&top).unwrap().count(), 1200);
        for name in &names {
            let redirect = format!("/{name}");
            assert_eq!(
                xattr(&top.join(name), REDIRECT).as_deref(),
                Some(redirect.as_bytes()),
                "{name}"
            );
        }
        // A name missing from the store, near the end: an error naming it.
        for missing in ["0001-gone", "1199-gone"] {
            let mut with_gap = all.clone();
            let at = missing[..4].parse::<usize>().unwrap();
            with_gap[at] = missing;
            std::fs::remove_dir_all(dir.join("layer")).unwrap();
            std::fs::create_dir(dir.join("layer")).unwrap();
            let error = build(
                open(&dir.join("layer")).as_fd(),
                open(&store).as_fd(),
                &with_gap,
            )
            .unwrap_err();
            assert_eq!(error.name, missing);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_strange_entry_is_an_error_that_names_it() {
        require_root();
        let dir = scratch("errors");
        let store = dir.join("store");
        let error = build(
            open(&dir.join("layer")).as_fd(),
            open(&store).as_fd(),
            &["zzz-gone"],
        )
        .unwrap_err();
        assert_eq!(error.name, "zzz-gone");
        assert!(error.message.contains("No such file"), "{error}");

        for name in ["..", "a/b", ""] {
            let dir = scratch("names");
            let error = build(
                open(&dir.join("layer")).as_fd(),
                open(&dir.join("store")).as_fd(),
                &[name],
            )
            .unwrap_err();
            assert_eq!(error.name, name);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        nix::unistd::mkfifo(&store.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::remove_dir_all(dir.join("layer")).unwrap();
        std::fs::create_dir(dir.join("layer")).unwrap();
        let error = build(
            open(&dir.join("layer")).as_fd(),
            open(&store).as_fd(),
            &["fifo"],
        )
        .unwrap_err();
        assert!(error.message.contains("neither"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
