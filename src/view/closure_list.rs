//! A closure as the generator records it for its view: the store
//! directory and the names of the closure's store paths, in a file named by
//! a digest of that content. The generator writes one for every closure a
//! unit is confined to; the view is built from it when a unit that needs it
//! first starts (`nix-confinement-generator view start DIGEST`), which
//! checks that the content still has the digest it is named by.

use std::hash::{DefaultHasher, Hasher};

const HEADER: &str = "nix-confinement-generator closure view 1\n";

/// The 128-bit digest that names a closure's view: 32 lowercase hex digits
/// (a valid systemd instance name and file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(u64, u64);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}{:016x}", self.0, self.1)
    }
}

impl Digest {
    /// The digest of a text that names what it is (a host links record,
    /// see [`crate::host::skeleton`]): SipHash and [`name_hash`] of it, in
    /// two lanes.
    pub fn of_text(text: &str) -> Digest {
        let mut hasher = DefaultHasher::new();
        hasher.write(text.as_bytes());
        Digest(hasher.finish(), name_hash(text))
    }

    /// Reads a digest written by [`Digest`]'s `Display`.
    pub fn parse(text: &str) -> Option<Digest> {
        if text.len() != 32 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        Some(Digest(
            u64::from_str_radix(&text[..16], 16).ok()?,
            u64::from_str_radix(&text[16..], 16).ok()?,
        ))
    }
}

/// What is wrong with a closure list's content (which file it is, the
/// caller says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    NotThisVersion,
    NoStoreDir,
    StoreDirNotAbsolute(String),
    NotAName(String),
    CutShort,
    NotSorted,
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::NotThisVersion => write!(f, "not a closure list of this version"),
            ListError::NoStoreDir => write!(f, "the store directory is missing"),
            ListError::StoreDirNotAbsolute(dir) => {
                write!(f, "{dir:?} is not an absolute store directory")
            }
            ListError::NotAName(line) => write!(f, "{line:?} is not the name of a store path"),
            ListError::CutShort => write!(f, "the last line is cut short"),
            ListError::NotSorted => write!(f, "the names are not sorted"),
        }
    }
}

impl std::error::Error for ListError {}

/// A closure: the store directory and the names (`<hash>-<name>`) of its
/// store paths, sorted and each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosureList {
    pub store_dir: String,
    pub names: Vec<String>,
}

impl ClosureList {
    /// The closure of the store paths `paths` (each under `store_dir`).
    pub fn new<'a>(store_dir: &str, paths: impl IntoIterator<Item = &'a str>) -> ClosureList {
        let prefix_length = store_dir.len() + 1;
        let mut names: Vec<String> = paths
            .into_iter()
            .map(|path| path[prefix_length..].to_owned())
            .collect();
        names.sort_unstable();
        names.dedup();
        ClosureList {
            store_dir: store_dir.to_owned(),
            names,
        }
    }

    /// The file's content.
    pub fn encode(&self) -> String {
        encode_sorted(&self.store_dir, self.names.iter().map(String::as_str))
    }

    /// The digest of the closure (see [`digest_of_hashes`]).
    pub fn digest(&self) -> Digest {
        digest_of_hashes(&self.store_dir, self.names.iter().map(|n| name_hash(n)))
    }

    /// Reads a file's content; `Err` says what is wrong with it. Every name
    /// must be a plain store entry name (no `/`, not `.` or `..`): each is
    /// looked up in the store directory when the layer is built.
    pub fn decode(text: &str) -> Result<ClosureList, ListError> {
        let rest = text.strip_prefix(HEADER).ok_or(ListError::NotThisVersion)?;
        let (store_dir, rest) = rest.split_once('\n').ok_or(ListError::NoStoreDir)?;
        if !store_dir.starts_with('/') {
            return Err(ListError::StoreDirNotAbsolute(store_dir.to_owned()));
        }
        let mut names = Vec::new();
        for line in rest.split_terminator('\n') {
            let plain = !line.is_empty()
                && line != "."
                && line != ".."
                && line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b));
            if !plain {
                return Err(ListError::NotAName(line.to_owned()));
            }
            names.push(line.to_owned());
        }
        if !rest.is_empty() && !rest.ends_with('\n') {
            return Err(ListError::CutShort);
        }
        if names.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ListError::NotSorted);
        }
        Ok(ClosureList {
            store_dir: store_dir.to_owned(),
            names,
        })
    }
}

/// The file's content for the store directory `store_dir` and `names`,
/// which must be sorted and each once (a closure in path order is): what
/// [`ClosureList::encode`] writes, without a copy of each name.
pub fn encode_sorted<'a>(store_dir: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let names = names.into_iter();
    let mut text =
        String::with_capacity(HEADER.len() + store_dir.len() + 1 + names.size_hint().0 * 56);
    text.push_str(HEADER);
    text.push_str(store_dir);
    text.push('\n');
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    text
}

/// The hash of one store path name (`<hash>-<name>`) that a closure's
/// digest is made of: eight bytes at a time, multiplied and rotated, then
/// mixed (MurmurHash3's finaliser). A store path's name starts with 32
/// characters of its own hash, so names differ early and evenly; each is
/// hashed once in a run, whatever number of closures it is in.
pub fn name_hash(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        hash = (hash ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(23);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    hash = (hash ^ u64::from_le_bytes(last)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The digest of a closure: of the list's version, the store directory and
/// the hashes of its names in order. 128 bits in two lanes made differently
/// (SipHash over the words, and a multiply-xor fold of them), from 64-bit
/// name hashes: two closures meet only if two names in them have the same
/// hash, which among the paths of one store does not happen by chance.
pub fn digest_of_hashes(store_dir: &str, hashes: impl IntoIterator<Item = u64>) -> Digest {
    // One buffer, hashed in one call: SipHash then takes the words eight
    // bytes at a time instead of one call per word.
    let mut bytes = Vec::with_capacity(HEADER.len() + store_dir.len() + 1 + 8 * 1024);
    bytes.extend_from_slice(HEADER.as_bytes());
    bytes.extend_from_slice(store_dir.as_bytes());
    bytes.push(b'\n');
    let mut fold: u64 = 0x243f_6a88_85a3_08d3 ^ name_hash(store_dir);
    for hash in hashes {
        bytes.extend_from_slice(&hash.to_le_bytes());
        fold = (fold ^ hash)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    let mut hasher = DefaultHasher::new();
    hasher.write(&bytes);
    let length = bytes.len() as u64;
    Digest(
        hasher.finish(),
        (fold ^ length).wrapping_mul(0xff51_afd7_ed55_8ccd),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClosureList {
        ClosureList::new(
            "/nix/store",
            [
                "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib",
                "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0",
                "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib",
            ],
        )
    }

    #[test]
    fn a_closure_list_reads_back_sorted_and_each_name_once() {
        let list = sample();
        assert_eq!(
            list.names,
            [
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0",
                "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib"
            ]
        );
        assert_eq!(
            list.encode(),
            "nix-confinement-generator closure view 1\n/nix/store\n\
             aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib\n"
        );
        assert_eq!(ClosureList::decode(&list.encode()), Ok(list));
    }

    #[test]
    fn the_digest_names_the_content() {
        let list = sample();
        let digest = list.digest();
        assert_eq!(Digest::parse(&digest.to_string()), Some(digest));
        assert_eq!(digest.to_string().len(), 32);
        let mut other = list.clone();
        other.names.pop();
        assert_ne!(other.digest(), digest);
        let mut moved = list.clone();
        moved.store_dir = "/gnu/store".into();
        assert_ne!(moved.digest(), digest);
        assert_eq!(Digest::parse("0123"), None);
        assert_eq!(Digest::parse(&"G".repeat(32)), None);
    }

    #[test]
    fn names_that_could_leave_the_store_are_refused() {
        for bad in ["..", ".", "a/b", "", "a b", "x\0"] {
            let text = format!("{HEADER}/nix/store\n{bad}\n");
            assert!(ClosureList::decode(&text).is_err(), "{bad:?}");
        }
        assert!(ClosureList::decode(&format!("{HEADER}/nix/store\nb\na\n")).is_err());
        assert!(ClosureList::decode(&format!("{HEADER}/nix/store\na\nb")).is_err());
        assert!(ClosureList::decode(&format!("{HEADER}nix/store\n")).is_err());
        assert!(ClosureList::decode("something else\n").is_err());
        assert_eq!(
            ClosureList::decode(&format!("{HEADER}/nix/store\n")).map(|l| l.names.len()),
            Ok(0)
        );
    }
}
