//! The system manager's unit search path (systemd.unit(5) "UNIT FILE LOAD
//! PATH"), without the generator output directories: generators run in
//! parallel, so another generator's output may not exist yet.

use crate::rootfs::Root;
use camino::{Utf8Path, Utf8PathBuf};

/// systemd's list, highest priority first (`systemd-analyze unit-paths` minus
/// the generator and transient-generator directories).
pub const DEFAULT_UNIT_PATH: &[&str] = &[
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// The search path to use.
///
/// `configured` replaces systemd's defaults (distributions patch the list:
/// NixOS adds its own directories). `$SYSTEMD_UNIT_PATH` replaces both, and a
/// trailing `:` appends the defaults, as in systemd. `/lib/systemd/system` is
/// dropped where `/lib` links to `/usr/lib` (merged /usr), so units are not
/// found twice.
pub fn unit_search_path(
    root: &Root,
    configured: Option<&[Utf8PathBuf]>,
    env_unit_path: Option<&str>,
) -> Vec<Utf8PathBuf> {
    let defaults: Vec<Utf8PathBuf> = match configured {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ => DEFAULT_UNIT_PATH.iter().map(Utf8PathBuf::from).collect(),
    };
    let mut path: Vec<Utf8PathBuf> = match env_unit_path {
        // Set, even to the empty string, it replaces the defaults: systemd
        // then has no search path at all (get_paths_from_environ()).
        Some(value) => {
            let mut list: Vec<Utf8PathBuf> = value
                .split(':')
                .filter(|d| !d.is_empty())
                .map(Utf8PathBuf::from)
                .collect();
            if value.ends_with(':') {
                list.extend(defaults);
            }
            list
        }
        None => defaults,
    };
    let lib_is_usr_lib = root
        .canonicalize(Utf8Path::new("/lib"))
        .is_ok_and(|real| real == "/usr/lib");
    if lib_is_usr_lib {
        path.retain(|dir| dir != "/lib/systemd/system");
    }
    let mut seen = std::collections::HashSet::new();
    path.retain(|dir| seen.insert(dir.clone()));
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Root {
        Root::new("/nonexistent-ncg-root")
    }

    #[test]
    fn defaults_without_configuration() {
        let path = unit_search_path(&root(), None, None);
        assert_eq!(path.first().unwrap(), "/etc/systemd/system.control");
        assert_eq!(path.last().unwrap(), "/usr/lib/systemd/system");
        assert!(path.iter().any(|d| d == "/lib/systemd/system"));
    }

    #[test]
    fn environment_replaces_and_trailing_colon_appends_defaults() {
        let path = unit_search_path(&root(), None, Some("/a:/b"));
        assert_eq!(path, ["/a", "/b"]);
        let path = unit_search_path(&root(), None, Some("/a:"));
        assert_eq!(path[0], "/a");
        assert_eq!(path[1], "/etc/systemd/system.control");
        // Empty components are dropped; ":" alone is the defaults; an empty
        // value is an empty search path, as in systemd 252.
        let path = unit_search_path(&root(), None, Some("/a::/b"));
        assert_eq!(path, ["/a", "/b"]);
        let path = unit_search_path(&root(), None, Some(":"));
        assert_eq!(path, unit_search_path(&root(), None, None));
        assert!(unit_search_path(&root(), None, Some("")).is_empty());
    }

    #[test]
    fn configuration_replaces_defaults() {
        let configured = vec![Utf8PathBuf::from("/etc/systemd-mutable/system")];
        let path = unit_search_path(&root(), Some(&configured), None);
        assert_eq!(path, ["/etc/systemd-mutable/system"]);
    }

    #[test]
    fn merged_usr_drops_lib() {
        let dir = std::env::temp_dir().join(format!("ncg-merged-usr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", dir.join("lib")).unwrap();
        let root = Root::new(Utf8PathBuf::from_path_buf(dir).unwrap());
        let path = unit_search_path(&root, None, None);
        assert!(!path.iter().any(|d| d == "/lib/systemd/system"));
    }
}
