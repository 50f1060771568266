//! Which store paths are symlinks on disk (systemd cannot bind a symlink, so
//! the generator binds its target instead — and a symlink bound as if it were
//! a directory would be followed to the host's own, possibly writable, store).

use crate::rootfs::Root;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::HashSet;
use std::os::fd::OwnedFd;

/// Looks at store paths under the root's store directory.
pub struct StoreProbe {
    /// The store directory's real path, resolved inside the root.
    real: Option<Utf8PathBuf>,
    dir: Option<OwnedFd>,
    /// With many paths to look at, one listing of the store directory (its
    /// entry types come with the listing) instead of one `fstatat()` each.
    listing: Option<Listing>,
}

struct Listing {
    symlinks: HashSet<Box<str>>,
    /// Entries whose type the file system did not report.
    unknown: HashSet<Box<str>>,
}

/// Listing [`LISTING_ENTRIES_PER_LOOKUP`] entries costs about what one
/// `fstatat()` does (measured on the benchmark system; see
/// benches/README.md); file systems report a directory's size in bytes,
/// roughly this many per entry.
const BYTES_PER_ENTRY_ESTIMATE: u64 = 50;
const LISTING_ENTRIES_PER_LOOKUP: u64 = 8;

impl StoreProbe {
    /// Prepares to look at about `lookups` paths of `store_dir` under `root`.
    pub fn new(root: &Root, store_dir: &str, lookups: usize) -> StoreProbe {
        // Not there: no path of it is a symlink (binding fails at start).
        let Ok(real) = root.real(Utf8Path::new(store_dir)) else {
            return StoreProbe {
                real: None,
                dir: None,
                listing: None,
            };
        };
        let dir = nix::fcntl::open(
            real.as_std_path(),
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok();
        let estimated_entries =
            std::fs::metadata(&real).map_or(u64::MAX, |m| m.len() / BYTES_PER_ENTRY_ESTIMATE);
        let listing = (estimated_entries < lookups as u64 * LISTING_ENTRIES_PER_LOOKUP)
            .then(|| list(&real))
            .flatten();
        StoreProbe {
            real: Some(real),
            dir,
            listing,
        }
    }

    /// Whether the store entry `name` (`<hash>-<name>`) is a symlink. A path
    /// that is not there is not one (binding it fails at start, as in the
    /// NixOS module).
    pub fn is_symlink(&self, name: &str) -> bool {
        if let Some(listing) = &self.listing {
            if listing.symlinks.contains(name) {
                return true;
            }
            if !listing.unknown.contains(name) {
                return false;
            }
        }
        match &self.dir {
            Some(dir) => {
                nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFLNK)
            }
            None => self.real.as_ref().is_some_and(|real| {
                std::fs::symlink_metadata(real.join(name)).is_ok_and(|m| m.file_type().is_symlink())
            }),
        }
    }
}

fn list(real: &Utf8Path) -> Option<Listing> {
    let mut listing = Listing {
        symlinks: HashSet::new(),
        unknown: HashSet::new(),
    };
    for entry in std::fs::read_dir(real).ok()? {
        let entry = entry.ok()?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        match entry.file_type() {
            Ok(kind) if kind.is_symlink() => {
                listing.symlinks.insert(name.into());
            }
            Ok(_) => {}
            Err(_) => {
                listing.unknown.insert(name.into());
            }
        }
    }
    Some(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_per_path_lookups_agree() {
        let dir = std::env::temp_dir().join(format!("ncg-probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = dir.join("nix/store");
        std::fs::create_dir_all(store.join("aaa-dir")).unwrap();
        std::fs::write(store.join("bbb-file"), "x").unwrap();
        std::os::unix::fs::symlink("aaa-dir", store.join("ccc-link")).unwrap();
        std::os::unix::fs::symlink("/nowhere", store.join("ddd-dangling")).unwrap();
        let root = Root::new(camino::Utf8PathBuf::from_path_buf(dir).unwrap());
        // Few lookups: one fstatat each; many: a listing.
        for lookups in [0, 1_000_000] {
            let probe = StoreProbe::new(&root, "/nix/store", lookups);
            assert_eq!(probe.listing.is_some(), lookups > 0, "{lookups}");
            for (name, expected) in [
                ("aaa-dir", false),
                ("bbb-file", false),
                ("ccc-link", true),
                ("ddd-dangling", true),
                ("eee-missing", false),
            ] {
                assert_eq!(
                    probe.is_symlink(name),
                    expected,
                    "{name} with {lookups} lookups"
                );
            }
        }
    }

    #[test]
    fn a_store_linked_out_of_the_root_is_looked_at_inside_it() {
        let base = std::env::temp_dir().join(format!("ncg-probe-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // On the host, where `root/nix` leads when the kernel follows it:
        // a symlink. Inside the root, at the same path: a directory.
        let host_nix = base.join("host-nix");
        std::fs::create_dir_all(host_nix.join("store")).unwrap();
        std::os::unix::fs::symlink("/nowhere", host_nix.join("store/aaa-x")).unwrap();
        let root_dir = base.join("root");
        let inside = root_dir.join(host_nix.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.join("store/aaa-x")).unwrap();
        std::os::unix::fs::symlink(&host_nix, root_dir.join("nix")).unwrap();
        let root = Root::new(camino::Utf8PathBuf::from_path_buf(root_dir).unwrap());
        for lookups in [0, 1_000_000] {
            let probe = StoreProbe::new(&root, "/nix/store", lookups);
            assert!(!probe.is_symlink("aaa-x"), "{lookups} lookups");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
