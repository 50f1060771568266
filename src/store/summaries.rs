//! Closure summaries: for each set of roots whose closure the last run
//! computed, that closure's view digest and size, kept beside the closure
//! cache. A warm run that finds a unit's roots here (and the view's record
//! in place) neither walks, orders nor digests its closure.
//!
//! A summary is a function of the reference graph and the store, which is
//! exactly what the closure cache stands for: the summaries file names the
//! `stat` stamp of the one cache file it was made with (written whole and
//! renamed, so each write is another inode), and a run reads it only while
//! it trusts that very file (see [`crate::store::cache`]), and only the
//! program that wrote it (its binary's stamp: another build may digest
//! otherwise) reads it. A closure's symlink store paths are listed in its
//! summary: what a symlink resolves to is read from the host's files, which
//! no stamp covers, and each must still resolve when the summary is used
//! (a dangling one blocks the unit: its closure is walked to say so).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::store::cache::FileStamp;

const HEADER: &str = "nix-confinement-generator closure summaries 2";
/// A summaries file larger than this is not read (not one of ours).
const MAX_SIZE: u64 = 16 << 20;

/// What a run found of one closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The digest of the closure's view (32 lowercase hex digits).
    pub digest: String,
    /// How many store paths the closure has.
    pub paths: usize,
    /// Its store paths that are symlinks, sorted.
    pub symlinks: Vec<String>,
}

/// The key of a unit's roots: its store paths, sorted, each once. `None`
/// when a root could not be written on a line of the file (the unit is
/// then not summarised).
pub fn key<'a>(roots: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut roots: Vec<&str> = roots.into_iter().collect();
    if roots.is_empty()
        || roots
            .iter()
            .any(|r| r.is_empty() || r.contains(char::is_whitespace))
    {
        return None;
    }
    roots.sort_unstable();
    roots.dedup();
    Some(roots.join(" "))
}

/// The summaries of one run, made with one closure cache file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summaries {
    entries: HashMap<String, Summary>,
}

impl Summaries {
    pub fn get(&self, key: &str) -> Option<&Summary> {
        self.entries.get(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn insert(&mut self, key: String, summary: Summary) {
        self.entries.insert(key, summary);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file's text: a header, what the summaries hold for (the cache
    /// file, the program, the store directory), then a line per closure
    /// (digest, number of paths, number of symlink store paths, those
    /// paths, roots), sorted.
    pub fn encode(&self, made_with: &MadeWith) -> String {
        let mut out = String::with_capacity(256 + self.entries.len() * 160);
        let _ = writeln!(out, "{HEADER}");
        let _ = writeln!(out, "cache {}", encode_stamp(&made_with.cache));
        let _ = writeln!(out, "program {}", encode_stamp(&made_with.program));
        let _ = writeln!(out, "store {}", made_with.store_dir);
        let mut lines: Vec<(&String, &Summary)> = self.entries.iter().collect();
        lines.sort_unstable_by_key(|(key, _)| *key);
        for (key, summary) in lines {
            let _ = write!(
                out,
                "{} {} {}",
                summary.digest,
                summary.paths,
                summary.symlinks.len()
            );
            for link in &summary.symlinks {
                let _ = write!(out, " {link}");
            }
            let _ = writeln!(out, " {key}");
        }
        out
    }

    /// The summaries in `text` when they were made with `made_with`; else
    /// `None` (another cache's, another program's, another store's, or not
    /// a file of ours).
    pub fn decode(text: &str, made_with: &MadeWith) -> Option<Summaries> {
        let mut lines = text.lines();
        if lines.next()? != HEADER
            || lines.next()?.strip_prefix("cache ")? != encode_stamp(&made_with.cache)
            || lines.next()?.strip_prefix("program ")? != encode_stamp(&made_with.program)
            || lines.next()?.strip_prefix("store ")? != made_with.store_dir
        {
            return None;
        }
        let mut entries = HashMap::new();
        for line in lines {
            let mut fields = line.splitn(4, ' ');
            let (digest, paths, links) = (fields.next()?, fields.next()?, fields.next()?);
            let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
            if digest.len() != 32 || !digest.bytes().all(hex) {
                return None;
            }
            let mut rest = fields.next()?.split(' ');
            let symlinks: Vec<String> = rest
                .by_ref()
                .take(links.parse().ok()?)
                .map(str::to_owned)
                .collect();
            // Written sorted, each once, as the roots.
            if !symlinks.is_empty()
                && key(symlinks.iter().map(String::as_str))? != symlinks.join(" ")
            {
                return None;
            }
            let roots = rest.collect::<Vec<_>>().join(" ");
            // Written by `key`: sorted, each root once.
            if key(roots.split(' '))? != roots {
                return None;
            }
            let summary = Summary {
                digest: digest.to_owned(),
                paths: paths.parse().ok()?,
                symlinks,
            };
            entries.insert(roots, summary);
        }
        Some(Summaries { entries })
    }
}

/// What summaries hold for: the closure cache file (its stamp), this
/// program (its binary's stamp) and the store directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeWith {
    pub cache: FileStamp,
    pub program: FileStamp,
    pub store_dir: String,
}

impl MadeWith {
    /// With the cache file stamped `cache`, by this very program; `None`
    /// when its binary cannot be stamped.
    pub fn this_program(cache: FileStamp, store_dir: &str) -> Option<MadeWith> {
        let program = std::fs::metadata("/proc/self/exe").ok()?;
        Some(MadeWith {
            cache,
            program: FileStamp::of(&program),
            store_dir: store_dir.to_owned(),
        })
    }
}

fn encode_stamp(stamp: &FileStamp) -> String {
    format!(
        "{} {} {} {}.{:09} {}.{:09}",
        stamp.device,
        stamp.inode,
        stamp.size,
        stamp.modified.0,
        stamp.modified.1,
        stamp.changed.0,
        stamp.changed.1
    )
}

/// Reads the summaries file `name` in `dir` when it was made with
/// `made_with`: empty when it is missing, made with something else, or not
/// a regular file of ours that no one else can write.
pub fn read_at(dir: &impl AsFd, name: &str, made_with: &MadeWith) -> Summaries {
    let Ok(file) = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return Summaries::default();
    };
    let mut file = std::fs::File::from(file);
    let ours = file.metadata().is_ok_and(|m| {
        m.is_file()
            && m.uid() == nix::unistd::geteuid().as_raw()
            && m.mode() & 0o022 == 0
            && m.len() <= MAX_SIZE
    });
    let mut text = String::new();
    if !ours || file.read_to_string(&mut text).is_err() {
        return Summaries::default();
    }
    Summaries::decode(&text, made_with).unwrap_or_default()
}

/// Writes `text` as the file `name` in `dir`, whole (see
/// [`crate::scratch::write_whole_at`]).
pub fn write_at(dir: &impl AsFd, name: &str, text: &str) -> std::io::Result<()> {
    let temporary = format!(".{name}.{}", std::process::id());
    crate::scratch::write_whole_at(dir, name, &temporary, |file| {
        file.write_all(text.as_bytes())
    })
    .map(drop)
}

/// Removes the summaries file `name` in `dir` (they hold for no cache this
/// run trusted or wrote).
pub fn remove_at(dir: &impl AsFd, name: &str) {
    let _ = unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(inode: u64) -> FileStamp {
        FileStamp {
            device: 2049,
            inode,
            size: 1_876_157,
            modified: (1_765_000_000, 12),
            changed: (1_765_000_000, 345_678_901),
        }
    }

    fn made_with(inode: u64) -> MadeWith {
        MadeWith {
            cache: stamp(inode),
            program: stamp(99),
            store_dir: "/nix/store".into(),
        }
    }

    fn sample() -> Summaries {
        let mut summaries = Summaries::default();
        summaries.insert(
            key(["/nix/store/bbb-b", "/nix/store/aaa-a", "/nix/store/bbb-b"]).unwrap(),
            Summary {
                digest: "0123456789abcdef0123456789abcdef".into(),
                paths: 561,
                symlinks: Vec::new(),
            },
        );
        summaries.insert(
            key(["/nix/store/ccc-c"]).unwrap(),
            Summary {
                digest: "fedcba9876543210fedcba9876543210".into(),
                paths: 3,
                symlinks: vec!["/nix/store/ddd-d".into(), "/nix/store/eee-e".into()],
            },
        );
        summaries
    }

    #[test]
    fn a_key_is_the_sorted_roots_each_once() {
        assert_eq!(
            key(["/nix/store/bbb-b", "/nix/store/aaa-a", "/nix/store/bbb-b"]).as_deref(),
            Some("/nix/store/aaa-a /nix/store/bbb-b")
        );
        assert_eq!(key([]), None);
        assert_eq!(key(["/nix/store/a b"]), None);
        assert_eq!(key(["/nix/store/a\nb"]), None);
    }

    #[test]
    fn summaries_read_back_only_with_what_they_were_made_with() {
        let text = sample().encode(&made_with(7));
        assert_eq!(
            text.lines().nth(4),
            Some("0123456789abcdef0123456789abcdef 561 0 /nix/store/aaa-a /nix/store/bbb-b")
        );
        assert_eq!(
            text.lines().nth(5),
            Some(
                "fedcba9876543210fedcba9876543210 3 2 /nix/store/ddd-d /nix/store/eee-e \
                 /nix/store/ccc-c"
            )
        );
        assert_eq!(Summaries::decode(&text, &made_with(7)), Some(sample()));
        // Another inode: the cache was written again.
        assert_eq!(Summaries::decode(&text, &made_with(8)), None);
        let mut touched = made_with(7);
        touched.cache.changed.1 += 1;
        assert_eq!(Summaries::decode(&text, &touched), None);
        let mut upgraded = made_with(7);
        upgraded.program.inode += 1;
        assert_eq!(Summaries::decode(&text, &upgraded), None);
        let mut elsewhere = made_with(7);
        elsewhere.store_dir = "/gnu/store".into();
        assert_eq!(Summaries::decode(&text, &elsewhere), None);
    }

    #[test]
    fn damaged_summaries_are_not_read() {
        let text = sample().encode(&made_with(7));
        let damaged = [
            text.replacen("0123456789abcdef", "0123456789ABCDEF", 1),
            text.replacen(" 561 ", " many ", 1),
            text.replacen(" 3 2 ", " 3 3 ", 1),
            text.replacen(" 3 2 ", " 3 x ", 1),
            text.replacen(
                "/nix/store/ddd-d /nix/store/eee-e",
                "/nix/store/eee-e /nix/store/ddd-d",
                1,
            ),
            text.replacen(
                "/nix/store/aaa-a /nix/store/bbb-b",
                "/nix/store/bbb-b /nix/store/aaa-a",
                1,
            ),
            text.replacen("0123456789abcdef0123456789abcdef 561 ", "0123 561 ", 1),
            text.replacen(" 561 0 /nix/store/aaa-a /nix/store/bbb-b", " 561 0", 1),
            text.replacen("summaries 2", "summaries 1", 1),
        ];
        for text in damaged {
            assert_eq!(Summaries::decode(&text, &made_with(7)), None, "{text}");
        }
    }
}
