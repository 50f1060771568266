//! Reading unit files: each file once per run, whole, with as few system
//! calls as a file can take.

use crate::fast_map::FastMap;
use crate::rootfs::Root;
use camino::{Utf8Path, Utf8PathBuf};
use std::sync::Arc;

/// A file's bytes, or why it cannot be read (shared: the answer is kept for
/// the run and handed to every unit that reads the file; the caller names
/// the file).
pub type FileContents = Result<Arc<[u8]>, Arc<std::io::Error>>;

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
        let read = read_file(&self.root.join(real), &mut Vec::new()).map_err(Arc::new);
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
