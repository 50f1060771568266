//! The closure cache: the part of the reference graph a run read from the
//! Nix database, kept in `/run` for the next run (every `daemon-reload`).
//!
//! A cache is used only while the `stat` stamps of everything it was read
//! from — the database, its write-ahead log, the store directory — are
//! exactly as they were before the graph was read (see [`Sources`]): any
//! write to the database and any store entry added, removed or replaced
//! changes one. Finer checks (ids, registration times, rows added since)
//! missed changes: a restored database keeps its inode, and SQLite reuses
//! the rowids of deleted rows.

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};

use crate::diag::counted;
use camino::{Utf8Path, Utf8PathBuf};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

use crate::scratch::ScratchError;

const MAGIC: &[u8; 8] = b"NCGCLOS\x04";
/// A cache larger than this is not read (a damaged length field, or a file
/// that is not ours).
const MAX_SIZE: u64 = 512 << 20;

/// Why a closure cache file could not be read or written: the file (or
/// its directory) and what went wrong.
#[derive(Debug)]
pub struct CacheError {
    pub path: Utf8PathBuf,
    pub kind: CacheErrorKind,
}

#[derive(Debug)]
pub enum CacheErrorKind {
    /// A system call on the file or its directory failed.
    System(Errno),
    /// Reading or writing the file failed.
    Io(std::io::Error),
    /// The file is not one this program uses: what it is instead.
    Refused(String),
    /// What is wrong inside the file.
    Corrupt(Corrupt),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match &self.kind {
            CacheErrorKind::System(errno) => write!(f, "{}", errno.desc()),
            CacheErrorKind::Io(e) => write!(f, "{e}"),
            CacheErrorKind::Refused(what) => write!(f, "{what}"),
            CacheErrorKind::Corrupt(corrupt) => write!(f, "{corrupt}"),
        }
    }
}

impl std::error::Error for CacheError {}

impl From<ScratchError> for CacheError {
    fn from(e: ScratchError) -> CacheError {
        CacheError {
            path: e.path,
            kind: CacheErrorKind::Refused(e.message),
        }
    }
}

fn error(path: &Utf8Path, kind: CacheErrorKind) -> CacheError {
    CacheError {
        path: path.to_owned(),
        kind,
    }
}

/// What the decoder found wrong inside a cache's bytes (which file they
/// came from is for [`CacheError`] to say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub String);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Corrupt {}

fn corrupt(what: impl Into<String>) -> Corrupt {
    Corrupt(what.into())
}

/// What a cache's graph was read from, stamped before it was read: the
/// database file, its write-ahead log (Nix writes through one; it holds
/// the transactions not yet copied into the file) and the store directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    pub database: FileStamp,
    pub wal: Option<FileStamp>,
    pub store: FileStamp,
}

impl Sources {
    /// Stamps the database file `database` (its `-wal` beside it) and the
    /// store directory `store` (paths on this machine). `Ok(None)` when a
    /// change made after this call might not change the stamps: the kernel
    /// stamps changes with a clock that advances in ticks, and a change in
    /// the tick the stamps were taken in would leave the change time as it
    /// is. Such sources must not be written with a cache.
    pub fn stamp(database: &Utf8Path, store: &Utf8Path) -> std::io::Result<Option<Sources>> {
        // The clock first: whatever changes after it was read is stamped
        // with this tick or a later one.
        let now = coarse_clock();
        let wal_path = format!("{database}-wal");
        let wal = match std::fs::metadata(&wal_path) {
            Ok(metadata) => Some(FileStamp::of(&metadata)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let sources = Sources {
            database: FileStamp::of(&std::fs::metadata(database)?),
            wal,
            store: FileStamp::of(&std::fs::metadata(store)?),
        };
        let stamps = [Some(sources.database), sources.wal, Some(sources.store)];
        let settled = stamps
            .iter()
            .flatten()
            .all(|stamp| settled_before(stamp.changed, now));
        Ok(settled.then_some(sources))
    }
}

/// `CLOCK_REALTIME_COARSE`: the clock the kernel stamps file changes with.
fn coarse_clock() -> (i64, i64) {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } != 0 {
        return (i64::MIN, 0); // no clock: nothing counts as settled
    }
    (now.tv_sec, now.tv_nsec)
}

/// Whether a change time `changed` lies in a tick before `now`, so that any
/// later change gets another one. A file system that keeps times coarser
/// than nanoseconds rounds them down: the digits it does not keep are
/// zeros, and a change up to that much later could get the same time, so
/// `now` must be that much later still (two seconds for whole seconds).
fn settled_before(changed: (i64, i64), now: (i64, i64)) -> bool {
    let (seconds, nanoseconds) = changed;
    let granularity: i64 = match nanoseconds {
        0 => 2_000_000_000,
        n => {
            let mut unit = 1;
            while unit < 1_000_000_000 && n % (unit * 10) == 0 {
                unit *= 10;
            }
            unit
        }
    };
    let changed = i128::from(seconds) * 1_000_000_000 + i128::from(nanoseconds);
    let now = i128::from(now.0) * 1_000_000_000 + i128::from(now.1);
    now >= changed + i128::from(granularity)
}

/// The cached part of the reference graph: store path `i` is entry `i` of
/// each table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosureCache {
    /// What the graph was read from.
    pub sources: Sources,
    pub store_dir: Box<str>,
    pub db_ids: Vec<i64>,
    pub registration_times: Vec<i64>,
    pub symlinks: Vec<bool>,
    path_starts: Vec<u32>,
    paths: String,
    reference_starts: Vec<u32>,
    references: Vec<u32>,
}

impl ClosureCache {
    pub fn new(sources: Sources, store_dir: &str) -> ClosureCache {
        ClosureCache {
            sources,
            store_dir: store_dir.into(),
            db_ids: Vec::new(),
            registration_times: Vec::new(),
            symlinks: Vec::new(),
            path_starts: vec![0],
            paths: String::new(),
            reference_starts: vec![0],
            references: Vec::new(),
        }
    }

    /// Adds a store path; `references` are indices of paths added before or
    /// after it.
    pub fn push(
        &mut self,
        db_id: i64,
        registration_time: i64,
        symlink: bool,
        path: &str,
        references: impl IntoIterator<Item = u32>,
    ) {
        self.db_ids.push(db_id);
        self.registration_times.push(registration_time);
        self.symlinks.push(symlink);
        self.paths.push_str(path);
        self.path_starts.push(self.paths.len() as u32);
        self.references.extend(references);
        self.reference_starts.push(self.references.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.db_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.db_ids.is_empty()
    }

    pub fn path(&self, index: usize) -> &str {
        &self.paths[self.path_starts[index] as usize..self.path_starts[index + 1] as usize]
    }

    pub fn references(&self, index: usize) -> &[u32] {
        &self.references
            [self.reference_starts[index] as usize..self.reference_starts[index + 1] as usize]
    }

    /// The cache as its file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_to(&mut out, &self.sources, &self.store_dir, self).expect("writing to memory");
        out
    }

    /// Decodes a cache from its file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<ClosureCache, Corrupt> {
        decode_from(&mut &*bytes, bytes.len() as u64)
    }
}

/// What a cache file is written from: store path `i` of `0..len()`.
pub trait Tables {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn db_id(&self, i: usize) -> i64;
    fn registration_time(&self, i: usize) -> i64;
    fn symlink(&self, i: usize) -> bool;
    fn path(&self, i: usize) -> &str;
    /// Appends the references of `i` (indices of `0..len()`) to `out`.
    fn references(&self, i: usize, out: &mut Vec<u32>);
}

impl Tables for ClosureCache {
    fn len(&self) -> usize {
        self.db_ids.len()
    }
    fn db_id(&self, i: usize) -> i64 {
        self.db_ids[i]
    }
    fn registration_time(&self, i: usize) -> i64 {
        self.registration_times[i]
    }
    fn symlink(&self, i: usize) -> bool {
        self.symlinks[i]
    }
    fn path(&self, i: usize) -> &str {
        ClosureCache::path(self, i)
    }
    fn references(&self, i: usize, out: &mut Vec<u32>) {
        out.extend_from_slice(ClosureCache::references(self, i));
    }
}

/// Writes the file format from `tables`, table by table, as it goes (no
/// copy of the whole file in memory).
///
/// The file is binary, little-endian, written whole and renamed into place;
/// its tables are flat, so that reading it is a few copies, not an
/// allocation per store path:
///
/// ```text
/// magic "NCGCLOS\x04"
/// stamp of db.sqlite                    (see below)
/// u8 1 and the stamp of db.sqlite-wal, or u8 0 when there was none
/// stamp of the store directory
/// u32 length, bytes: the store directory
/// u32 n: the number of store paths, then the tables, each of n entries
/// i64 × n   ValidPaths.id
/// i64 × n   registrationTime
/// u8 × n    1 = the store path is a symlink, 0 = it is not
/// u32 × n+1 where each path starts in the text (and the text's length)
/// u32 length, bytes: the paths, one after the other
/// u32 × n+1 where each path's references start (and their count)
/// u32 × …   references, as indices of these tables
///
/// a stamp: u64 device, u64 inode, u64 size, i64 × 2 modified (seconds,
/// nanoseconds), i64 × 2 changed (seconds, nanoseconds)
/// ```
pub fn encode_to(
    out: &mut impl Write,
    sources: &Sources,
    store_dir: &str,
    tables: &impl Tables,
) -> std::io::Result<()> {
    let n = tables.len();
    let too_big = || std::io::Error::other("more than 4 GiB of paths or references");
    out.write_all(MAGIC)?;
    encode_stamp(out, &sources.database)?;
    match &sources.wal {
        Some(wal) => {
            out.write_all(&[1])?;
            encode_stamp(out, wal)?;
        }
        None => out.write_all(&[0])?,
    }
    encode_stamp(out, &sources.store)?;
    out.write_all(&(store_dir.len() as u32).to_le_bytes())?;
    out.write_all(store_dir.as_bytes())?;
    out.write_all(&u32::try_from(n).map_err(|_| too_big())?.to_le_bytes())?;
    for i in 0..n {
        out.write_all(&tables.db_id(i).to_le_bytes())?;
    }
    for i in 0..n {
        out.write_all(&tables.registration_time(i).to_le_bytes())?;
    }
    for i in 0..n {
        out.write_all(&[u8::from(tables.symlink(i))])?;
    }
    let mut start = 0u32;
    out.write_all(&start.to_le_bytes())?;
    for i in 0..n {
        start = u32::try_from(tables.path(i).len())
            .ok()
            .and_then(|l| start.checked_add(l))
            .ok_or_else(too_big)?;
        out.write_all(&start.to_le_bytes())?;
    }
    out.write_all(&start.to_le_bytes())?;
    for i in 0..n {
        out.write_all(tables.path(i).as_bytes())?;
    }
    let mut references = Vec::new();
    let mut start = 0u32;
    out.write_all(&start.to_le_bytes())?;
    for i in 0..n {
        references.clear();
        tables.references(i, &mut references);
        start = u32::try_from(references.len())
            .ok()
            .and_then(|l| start.checked_add(l))
            .ok_or_else(too_big)?;
        out.write_all(&start.to_le_bytes())?;
    }
    for i in 0..n {
        references.clear();
        tables.references(i, &mut references);
        for reference in &references {
            out.write_all(&reference.to_le_bytes())?;
        }
    }
    Ok(())
}

fn encode_stamp(out: &mut impl Write, stamp: &FileStamp) -> std::io::Result<()> {
    for word in [stamp.device, stamp.inode, stamp.size] {
        out.write_all(&word.to_le_bytes())?;
    }
    for word in [
        stamp.modified.0,
        stamp.modified.1,
        stamp.changed.0,
        stamp.changed.1,
    ] {
        out.write_all(&word.to_le_bytes())?;
    }
    Ok(())
}

/// Decodes a cache of `size` bytes as it reads it; `Err` says what is wrong
/// with it. The tables must agree with each other and every reference must
/// name an entry, so a decoded cache is a well-formed graph (whether its ids
/// are distinct is checked by its user, who indexes them anyway).
pub fn decode_from(input: &mut impl Read, size: u64) -> Result<ClosureCache, Corrupt> {
    let mut input = Reader { input, at: 0, size };
    if input.bytes(8)? != MAGIC {
        return Err(corrupt("not a closure cache of this version"));
    }
    let database = input.stamp()?;
    let wal = match input.bytes(1)?[0] {
        0 => None,
        1 => Some(input.stamp()?),
        other => return Err(corrupt(format!("write-ahead log flag {other}"))),
    };
    let sources = Sources {
        database,
        wal,
        store: input.stamp()?,
    };
    let store_dir = input.text()?.into();
    let n = input.u32()? as usize;
    // Each path takes at least 25 bytes: a larger count is damage, not a
    // reason to allocate.
    if n as u64 > size / 25 {
        return Err(corrupt(format!(
            "{} cannot fit in {}",
            counted(n, "path", "paths"),
            counted(size, "byte", "bytes")
        )));
    }
    let db_ids = input.i64s(n)?;
    let registration_times = input.i64s(n)?;
    let symlinks = input
        .bytes(n)?
        .into_iter()
        .map(|b| match b {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(corrupt(format!("symlink flag {other}"))),
        })
        .collect::<Result<Vec<bool>, Corrupt>>()?;
    let path_starts = input.u32s(n + 1)?;
    let paths = input.text()?;
    check_starts(&path_starts, paths.len(), "path")?;
    if let Some(bad) = path_starts
        .iter()
        .find(|&&s| !paths.is_char_boundary(s as usize))
    {
        return Err(corrupt(format!("path start {bad} is inside a character")));
    }
    let reference_starts = input.u32s(n + 1)?;
    let reference_count = *reference_starts.last().expect("n + 1 entries") as u64;
    if reference_count > size / 4 {
        return Err(corrupt(format!(
            "{} cannot fit in {}",
            counted(reference_count, "reference", "references"),
            counted(size, "byte", "bytes")
        )));
    }
    let references = input.u32s(reference_count as usize)?;
    check_starts(&reference_starts, references.len(), "reference")?;
    if let Some(bad) = references.iter().find(|&&r| r as usize >= n) {
        return Err(corrupt(format!(
            "reference {bad} is not in the table of {}",
            counted(n, "path", "paths")
        )));
    }
    let mut one = [0u8; 1];
    if input
        .input
        .read(&mut one)
        .map_err(|e| corrupt(e.to_string()))?
        != 0
    {
        return Err(corrupt(format!(
            "bytes after the tables, at byte {}",
            input.at
        )));
    }
    Ok(ClosureCache {
        sources,
        store_dir,
        db_ids,
        registration_times,
        symlinks,
        path_starts,
        paths,
        reference_starts,
        references,
    })
}

/// Starts must begin at 0, never decrease and end at the table's length.
fn check_starts(starts: &[u32], length: usize, what: &str) -> Result<(), Corrupt> {
    if starts.first() != Some(&0)
        || starts.last().map(|&l| l as usize) != Some(length)
        || starts.windows(2).any(|w| w[0] > w[1])
    {
        return Err(corrupt(format!("the {what} table is not in order")));
    }
    Ok(())
}

struct Reader<'a, R: Read> {
    input: &'a mut R,
    at: u64,
    /// The file's size: no table can be longer than what is left of it.
    size: u64,
}

impl<R: Read> Reader<'_, R> {
    /// The next `n` bytes (a damaged length cannot make it allocate more
    /// than the file holds).
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, Corrupt> {
        if n as u64 > self.size.saturating_sub(self.at) {
            return Err(corrupt(format!(
                "truncated at byte {}: {n} more expected",
                self.at
            )));
        }
        // Room for all of it at once (growing by doubling would copy the
        // megabyte of paths and touch twice the memory), read into without
        // zeroing it first.
        let mut out = Vec::with_capacity(n);
        let read = (&mut *self.input)
            .take(n as u64)
            .read_to_end(&mut out)
            .map_err(|e| corrupt(format!("at byte {}: {e}", self.at)))?;
        if read < n {
            return Err(corrupt(format!(
                "truncated at byte {}",
                self.at + read as u64
            )));
        }
        self.at += n as u64;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let b = self.bytes(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn stamp(&mut self) -> Result<FileStamp, Corrupt> {
        Ok(FileStamp {
            device: self.u64()?,
            inode: self.u64()?,
            size: self.u64()?,
            modified: (self.u64()? as i64, self.u64()? as i64),
            changed: (self.u64()? as i64, self.u64()? as i64),
        })
    }
    fn text(&mut self) -> Result<String, Corrupt> {
        let at = self.at;
        let length = self.u32()? as usize;
        String::from_utf8(self.bytes(length)?)
            .map_err(|_| corrupt(format!("text at byte {at} is not UTF-8")))
    }
    /// `n` little-endian words, converted a piece at a time.
    fn words<const W: usize, T>(
        &mut self,
        n: usize,
        convert: impl Fn([u8; W]) -> T,
    ) -> Result<Vec<T>, Corrupt> {
        let mut out = Vec::with_capacity(n.min(1 << 20));
        let mut left = n;
        let mut buffer = vec![0u8; W * 4096];
        while left > 0 {
            let count = left.min(4096);
            let piece = &mut buffer[..count * W];
            self.input
                .read_exact(piece)
                .map_err(|_| corrupt(format!("truncated at byte {}", self.at)))?;
            self.at += piece.len() as u64;
            out.extend(
                piece
                    .chunks_exact(W)
                    .map(|c| convert(c.try_into().expect("W bytes"))),
            );
            left -= count;
        }
        Ok(out)
    }
    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, Corrupt> {
        self.words(n, u32::from_le_bytes)
    }
    fn i64s(&mut self, n: usize) -> Result<Vec<i64>, Corrupt> {
        self.words(n, i64::from_le_bytes)
    }
}

/// Reads the cache at `real` (a path on this machine). `Ok(None)`: there is
/// none. The file must be a regular file owned by us and writable by no one
/// else: it decides what confined services see.
pub fn read(real: &Utf8Path) -> Result<Option<ClosureCache>, CacheError> {
    read_stamped(real).map(|read| read.map(|(cache, _)| cache))
}

/// Which file something was read from, as closely as `fstat` tells. A cache
/// is rewritten as a new file renamed into place: a rewritten cache has
/// another inode and modification time, so what was derived from one cache
/// (the drop-in store's keys) names it by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub modified: (i64, i64),
    pub changed: (i64, i64),
}

impl FileStamp {
    pub fn of(metadata: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// [`read`], with the stamp of the file read.
pub fn read_stamped(real: &Utf8Path) -> Result<Option<(ClosureCache, FileStamp)>, CacheError> {
    let (dir, name) = crate::scratch::split_file(real)?;
    match open_dir(dir) {
        Ok(dir) => read_stamped_at(&dir, name, real),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(error(dir, CacheErrorKind::System(e))),
    }
}

/// [`read_stamped`] of the file `name` in the open directory `dir`
/// (`shown` is the path that messages name).
pub fn read_stamped_at(
    dir: &impl AsFd,
    name: &str,
    shown: &Utf8Path,
) -> Result<Option<(ClosureCache, FileStamp)>, CacheError> {
    let file = match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(file) => std::fs::File::from(file),
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(error(shown, CacheErrorKind::System(e))),
    };
    read_file(file, shown)
}

/// Reads the cache from the open `file` when it is a file of ours (`real`:
/// its path, for messages).
fn read_file(
    file: std::fs::File,
    real: &Utf8Path,
) -> Result<Option<(ClosureCache, FileStamp)>, CacheError> {
    let refused = |what: String| error(real, CacheErrorKind::Refused(what));
    let metadata = file
        .metadata()
        .map_err(|e| error(real, CacheErrorKind::Io(e)))?;
    if !metadata.is_file() {
        return Err(refused("not a regular file".into()));
    }
    if metadata.uid() != nix::unistd::geteuid().as_raw() || metadata.mode() & 0o022 != 0 {
        return Err(refused(format!(
            "owned by uid {} with mode {:o}; only a file of ours that no one else can write is used",
            metadata.uid(),
            metadata.mode() & 0o7777
        )));
    }
    if metadata.len() > MAX_SIZE {
        return Err(refused(format!("{} bytes is too large", metadata.len())));
    }
    let mut input = std::io::BufReader::with_capacity(1 << 16, file);
    decode_from(&mut input, metadata.len())
        .map(|cache| Some((cache, FileStamp::of(&metadata))))
        .map_err(|e| error(real, CacheErrorKind::Corrupt(e)))
}

/// Writes the cache to `real` whole: a new file in the same directory,
/// renamed over the old one, so that a reader sees the old or the new file,
/// never a part. The directory is made (mode 0700) when missing.
pub fn write(real: &Utf8Path, cache: &ClosureCache) -> Result<FileStamp, CacheError> {
    write_tables(real, &cache.sources, &cache.store_dir, cache)
}

/// [`write`] from any [`Tables`].
pub fn write_tables(
    real: &Utf8Path,
    sources: &Sources,
    store_dir: &str,
    tables: &impl Tables,
) -> Result<FileStamp, CacheError> {
    let (dir, name) = crate::scratch::split_file(real)?;
    if !dir.as_std_path().is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| error(dir, CacheErrorKind::Io(e)))?;
    }
    let dir = open_dir(dir).map_err(|e| error(dir, CacheErrorKind::System(e)))?;
    write_tables_at(&dir, name, real, sources, store_dir, tables)
}

/// [`write_tables`] as the file `name` in the open directory `dir` (`shown`
/// is the path that messages name): a new file in it, renamed over the old
/// one. Returns the stamp of the file in place (taken after the rename,
/// which changes it).
pub fn write_tables_at(
    dir: &impl AsFd,
    name: &str,
    shown: &Utf8Path,
    sources: &Sources,
    store_dir: &str,
    tables: &impl Tables,
) -> Result<FileStamp, CacheError> {
    let temporary = format!(".{name}.{}", std::process::id());
    crate::scratch::write_whole_at(dir, name, &temporary, |file| {
        // A file cut short is refused when read.
        let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
        encode_to(&mut out, sources, store_dir, tables)?;
        out.flush()
    })
    .and_then(|file| Ok(FileStamp::of(&file.metadata()?)))
    .map_err(|e| error(shown, CacheErrorKind::Io(e)))
}

/// A directory on this machine, opened to read and write files in it.
fn open_dir(dir: &Utf8Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        dir.as_std_path(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClosureCache {
        let mut cache = ClosureCache::new(sample_sources(), "/nix/store");
        cache.push(
            7,
            1_700_000_000,
            false,
            "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello",
            [1],
        );
        cache.push(
            3,
            1_600_000_000,
            true,
            "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-link",
            [],
        );
        cache
    }

    fn sample_sources() -> Sources {
        let stamp = |n: u64| FileStamp {
            device: 2049,
            inode: n,
            size: 4096 * n,
            modified: (1_700_000_000 + n as i64, 5),
            changed: (1_700_000_000 + n as i64, 123_456_789),
        };
        Sources {
            database: stamp(1),
            wal: Some(stamp(2)),
            store: stamp(3),
        }
    }

    #[test]
    fn a_cache_reads_back_as_written() {
        let cache = sample();
        let read = ClosureCache::decode(&cache.encode()).unwrap();
        assert_eq!(read, cache);
        assert_eq!(read.len(), 2);
        assert_eq!(
            read.path(1),
            "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-link"
        );
        assert_eq!(read.references(0), &[1]);
        assert_eq!(read.references(1), &[] as &[u32]);
        assert_eq!(
            (read.db_ids[0], read.registration_times[1], read.symlinks[1]),
            (7, 1_600_000_000, true)
        );
    }

    #[test]
    fn a_cache_made_without_a_write_ahead_log_reads_back() {
        let mut cache = sample();
        cache.sources.wal = None;
        assert_eq!(ClosureCache::decode(&cache.encode()).unwrap(), cache);
    }

    #[test]
    fn a_change_time_is_settled_a_tick_of_its_granularity_later() {
        // Nanoseconds: any later time.
        assert!(!settled_before((100, 123_456_789), (100, 123_456_789)));
        assert!(settled_before((100, 123_456_789), (100, 123_456_790)));
        // Kept in milliseconds (rounded down): a millisecond later.
        assert!(!settled_before((100, 5_000_000), (100, 5_999_999)));
        assert!(settled_before((100, 5_000_000), (100, 6_000_000)));
        // Whole seconds: two seconds later.
        assert!(!settled_before((100, 0), (101, 999_999_999)));
        assert!(settled_before((100, 0), (102, 0)));
        // A change time after the clock (it was set back).
        assert!(!settled_before((200, 1), (100, 0)));
    }

    #[test]
    fn sources_changed_a_moment_ago_are_not_settled() {
        let dir = crate::test_dirs::fresh("cache-settled");
        let database = dir.join("db.sqlite");
        std::fs::write(&database, b"x").unwrap();
        // Just written: within the clock's current tick (or the next).
        let fresh = Sources::stamp(&database, &dir).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let settled = Sources::stamp(&database, &dir)
            .unwrap()
            .expect("settled by now");
        assert!(fresh.is_none() || fresh == Some(settled));
        assert_eq!(settled.wal, None);
        std::fs::write(format!("{database}-wal"), b"y").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let with_wal = Sources::stamp(&database, &dir).unwrap().unwrap();
        assert!(with_wal.wal.is_some());
        assert_ne!(
            with_wal.store, settled.store,
            "a new entry changes the directory"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_caches_are_refused_not_misread() {
        let bytes = sample().encode();
        for end in 0..bytes.len() {
            assert!(
                ClosureCache::decode(&bytes[..end]).is_err(),
                "truncated at {end}"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(ClosureCache::decode(&extra).is_err());
        // A reference outside the table.
        let mut cache = ClosureCache::new(sample_sources(), "/nix/store");
        cache.push(1, 0, false, "/nix/store/a", [1]);
        let error = ClosureCache::decode(&cache.encode()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("reference 1 is not in the table"),
            "{error}"
        );
        // Another version.
        let mut other = bytes;
        other[7] = 1;
        assert!(ClosureCache::decode(&other).is_err());
    }

    #[test]
    fn random_damage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let good = sample().encode();
        for round in 0..20_000 {
            let mut bytes = good.clone();
            for _ in 0..1 + round % 4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % bytes.len();
                bytes[at] = (state >> 32) as u8;
            }
            if let Ok(cache) = ClosureCache::decode(&bytes) {
                // Whatever decodes is usable without a panic.
                for i in 0..cache.len() {
                    let _ = (cache.path(i), cache.references(i));
                }
            }
        }
    }

    #[test]
    fn only_a_private_file_of_ours_is_read() {
        let dir = crate::test_dirs::fresh("cache-private");
        let path = dir.join("closures");
        assert_eq!(read(&path).unwrap(), None);
        write(&path, &sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap(), Some(sample()));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622)).unwrap();
        let error = read(&path).unwrap_err();
        assert!(matches!(error.kind, CacheErrorKind::Refused(_)), "{error}");
        assert!(
            error.to_string().contains("no one else can write"),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        assert!(read(&path).is_err(), "a symlink is not followed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
