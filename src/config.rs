//! The generator's own configuration: `nix-confinement-generator.conf` and
//! `nix-confinement-generator.conf.d/*.conf` in `/usr/lib/systemd`,
//! `/usr/local/lib/systemd`, `/etc/systemd` and `/run/systemd`, read like every
//! systemd configuration file: later directories override earlier ones, a
//! drop-in overrides the main files, drop-ins apply in lexical order and a
//! drop-in name in a later directory hides the same name in an earlier one.

use crate::annotation::Mode;
use crate::diag::{Diagnostic, Location};
use crate::rootfs::Root;
use crate::store::path::StoreDir;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;

pub const CONFIG_NAME: &str = "nix-confinement-generator.conf";
/// Lowest priority first.
pub const CONFIG_DIRS: &[&str] = &[
    "/usr/lib/systemd",
    "/usr/local/lib/systemd",
    "/etc/systemd",
    "/run/systemd",
];

/// Where the closure cache is kept unless configured: `/run` lasts until the
/// next boot, which is what a cache checked against the database needs.
pub const DEFAULT_CLOSURE_CACHE: &str = "/run/nix-confinement-generator/closures";
/// Where closures are recorded for their views unless configured.
pub const DEFAULT_VIEWS: &str = "/run/nix-confinement-generator/views";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub store_dir: StoreDir,
    /// Nix's state directory; the database is `<state dir>/db/db.sqlite`.
    pub state_dir: Utf8PathBuf,
    /// Replaces systemd's default unit search path when set.
    pub unit_path: Option<Vec<Utf8PathBuf>>,
    /// Mode for units that do not set `X-ConfinementMode=`.
    pub default_mode: Mode,
    /// `/bin/sh` for units that do not set `X-ConfinementBinSh=`, used only
    /// when it resolves into the store.
    pub default_bin_sh: Option<Utf8PathBuf>,
    /// The closure cache kept between runs (see [`crate::store::cache`]);
    /// `None` turns it off.
    pub closure_cache: Option<Utf8PathBuf>,
    /// Where closures are recorded for their views (see [`crate::view`]);
    /// `None`: no views, every store path is bound on its own.
    pub views: Option<Utf8PathBuf>,
    /// Files read, in order.
    pub sources: Vec<Utf8PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store_dir: StoreDir::new("/nix/store"),
            state_dir: Utf8PathBuf::from("/nix/var/nix"),
            unit_path: None,
            default_mode: Mode::FullApivfs,
            default_bin_sh: Some(Utf8PathBuf::from("/bin/sh")),
            closure_cache: Some(Utf8PathBuf::from(DEFAULT_CLOSURE_CACHE)),
            views: Some(Utf8PathBuf::from(DEFAULT_VIEWS)),
            sources: Vec::new(),
        }
    }
}

/// Loads the configuration under `root`. Errors (unreadable files, invalid
/// values) are returned beside the configuration: the caller blocks every
/// annotated unit, since a confinement computed from a configuration we
/// could not read may be wrong.
pub fn load(root: &Root) -> (Config, Vec<Diagnostic>) {
    let mut config = Config::default();
    let mut errors = Vec::new();
    for file in config_files(root) {
        match read_in_root(root, &file) {
            Ok(bytes) => {
                errors.extend(apply_text(
                    &mut config,
                    &String::from_utf8_lossy(&bytes),
                    &file,
                ));
                config.sources.push(file);
            }
            Err(e) => errors.push(Diagnostic::error(
                None,
                Some(Location::new(&file, 0)),
                format!("cannot read the configuration: {e}"),
            )),
        }
    }
    (config, errors)
}

/// Applies the text of one configuration file; returns its errors.
pub fn apply_text(config: &mut Config, text: &str, file: &Utf8Path) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    match ini::Ini::load_from_str(text) {
        Ok(ini) => apply(config, &ini, file, &mut errors),
        Err(e) => errors.push(Diagnostic::error(
            None,
            Some(Location::new(
                file,
                u32::try_from(e.line).unwrap_or(u32::MAX),
            )),
            format!("cannot parse the configuration: {}", e.msg),
        )),
    }
    errors
}

/// The contents of `file` (logical), its links resolved inside the root; a
/// link to `/dev/null` (masked) reads as empty.
fn read_in_root(root: &Root, file: &Utf8Path) -> std::io::Result<Vec<u8>> {
    if crate::unit::catalog::links_to_dev_null(root, file) {
        return Ok(Vec::new());
    }
    std::fs::read(root.real(file)?)
}

/// The files to read, in the order their values apply. Every path is
/// resolved inside the root, as `systemctl --root` does.
fn config_files(root: &Root) -> Vec<Utf8PathBuf> {
    let mut files = Vec::new();
    // The main file: the one in the highest-priority directory.
    if let Some(main) = CONFIG_DIRS
        .iter()
        .rev()
        .map(|dir| Utf8Path::new(dir).join(CONFIG_NAME))
        .find(|path| root.real(path).is_ok_and(|real| real.is_file()))
    {
        files.push(main);
    }
    let mut dropins: BTreeMap<String, Utf8PathBuf> = BTreeMap::new();
    for dir in CONFIG_DIRS {
        let dropin_dir = Utf8Path::new(dir).join(format!("{CONFIG_NAME}.d"));
        let Ok(entries) = root.real(&dropin_dir).and_then(std::fs::read_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".conf") && !name.starts_with('.') {
                dropins.insert(name.clone(), dropin_dir.join(name));
            }
        }
    }
    files.extend(dropins.into_values());
    files
}

fn apply(config: &mut Config, ini: &ini::Ini, file: &Utf8Path, errors: &mut Vec<Diagnostic>) {
    let mut error = |key: &str, message: String| {
        errors.push(Diagnostic::error(
            None,
            Some(Location::new(file, 0)),
            format!("{key}: {message}"),
        ))
    };
    for (section, properties) in ini.iter() {
        for (key, value) in properties.iter() {
            let value = value.trim();
            match (section.unwrap_or(""), key) {
                ("Nix", "StoreDir") => match absolute(value) {
                    Some(path) => config.store_dir = StoreDir::new(path.as_str()),
                    None => error(
                        "[Nix] StoreDir",
                        format!("{value:?} is not an absolute path"),
                    ),
                },
                ("Nix", "StateDir") => match absolute(value) {
                    Some(path) => config.state_dir = path,
                    None => error(
                        "[Nix] StateDir",
                        format!("{value:?} is not an absolute path"),
                    ),
                },
                ("Units", "SearchPath") => {
                    let list: Vec<&str> = value.split_ascii_whitespace().collect();
                    if list.is_empty() {
                        config.unit_path = None;
                    } else if let Some(bad) = list.iter().find(|d| !d.starts_with('/')) {
                        error(
                            "[Units] SearchPath",
                            format!("{bad:?} is not an absolute path"),
                        );
                    } else {
                        config.unit_path = Some(list.into_iter().map(Utf8PathBuf::from).collect());
                    }
                }
                ("Defaults", "Mode") => match Mode::parse(value) {
                    Some(mode) => config.default_mode = mode,
                    None => error(
                        "[Defaults] Mode",
                        format!("{value:?} is not one of full-apivfs, chroot-only"),
                    ),
                },
                ("Defaults", "BinSh") => match optional_absolute(value) {
                    Some(path) => config.default_bin_sh = path,
                    None => error(
                        "[Defaults] BinSh",
                        format!("{value:?} is not an absolute path"),
                    ),
                },
                ("Generator", "ClosureCache") => match optional_absolute(value) {
                    Some(path) => config.closure_cache = path,
                    None => error(
                        "[Generator] ClosureCache",
                        format!("{value:?} is not an absolute path"),
                    ),
                },
                // A store of rendered drop-ins that earlier versions kept;
                // its setting is accepted so that a configuration naming it
                // does not block every annotated unit.
                ("Generator", "DropinStore") => {}
                ("Generator", "Views") => match optional_absolute(value) {
                    Some(path) => config.views = path,
                    None => error(
                        "[Generator] Views",
                        format!("{value:?} is not an absolute path"),
                    ),
                },
                (section, key) => {
                    error(&format!("[{section}] {key}"), "unknown setting".to_owned())
                }
            }
        }
    }
}

/// An empty value (none) or an absolute path; `None` when it is neither.
fn optional_absolute(value: &str) -> Option<Option<Utf8PathBuf>> {
    if value.is_empty() {
        Some(None)
    } else {
        absolute(value).map(Some)
    }
}

fn absolute(value: &str) -> Option<Utf8PathBuf> {
    (value.starts_with('/') && !value.contains(char::is_whitespace))
        .then(|| Utf8PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> Root {
        let dir = std::env::temp_dir().join(format!(
            "ncg-config-{}-{}",
            std::process::id(),
            files.len() * 31 + files.first().map_or(0, |f| f.1.len())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        Root::new(Utf8PathBuf::from_path_buf(dir).unwrap())
    }

    #[test]
    fn defaults_without_files() {
        let (config, errors) = load(&root_with(&[]));
        assert!(errors.is_empty());
        assert_eq!(config.store_dir.as_str(), "/nix/store");
        assert_eq!(config.state_dir, "/nix/var/nix");
        assert_eq!(
            config.default_bin_sh.as_deref(),
            Some(Utf8Path::new("/bin/sh"))
        );
        assert_eq!(config.default_mode, Mode::FullApivfs);
    }

    #[test]
    fn etc_main_file_wins_and_dropins_override_in_order() {
        let (config, errors) = load(&root_with(&[
            (
                "/usr/lib/systemd/nix-confinement-generator.conf",
                "[Defaults]\nMode=full-apivfs\n",
            ),
            (
                "/etc/systemd/nix-confinement-generator.conf",
                "[Defaults]\nMode=chroot-only\n[Nix]\nStoreDir=/gnu/store\n",
            ),
            (
                "/usr/lib/systemd/nix-confinement-generator.conf.d/10-a.conf",
                "[Defaults]\nBinSh=/a/sh\n",
            ),
            (
                "/etc/systemd/nix-confinement-generator.conf.d/20-b.conf",
                "[Units]\nSearchPath=/x /y\n",
            ),
            (
                "/run/systemd/nix-confinement-generator.conf.d/10-a.conf",
                "[Defaults]\nBinSh=\n",
            ),
        ]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.default_mode, Mode::ChrootOnly);
        assert_eq!(config.store_dir.as_str(), "/gnu/store");
        assert_eq!(
            config.default_bin_sh, None,
            "the /run drop-in hides the /usr/lib one"
        );
        assert_eq!(config.unit_path.unwrap(), ["/x", "/y"]);
        assert_eq!(config.sources.len(), 3);
    }

    #[test]
    fn the_shipped_configuration_states_the_defaults() {
        let shipped = include_str!("../generator.d/nix-confinement-generator.conf");
        let (config, errors) = load(&root_with(&[(
            "/usr/lib/systemd/nix-confinement-generator.conf",
            shipped,
        )]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            Config {
                sources: Vec::new(),
                ..config
            },
            Config::default()
        );
    }

    #[test]
    fn invalid_values_are_errors_naming_the_file() {
        let (_, errors) = load(&root_with(&[(
            "/etc/systemd/nix-confinement-generator.conf",
            "[Defaults]\nMode=paranoid\n[Nix]\nStateDir=relative\nTypo=1\n",
        )]));
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "/etc/systemd/nix-confinement-generator.conf: [Defaults] Mode: \"paranoid\" is not one of full-apivfs, chroot-only",
                "/etc/systemd/nix-confinement-generator.conf: [Nix] StateDir: \"relative\" is not an absolute path",
                "/etc/systemd/nix-confinement-generator.conf: [Nix] Typo: unknown setting",
            ]
        );
    }

    #[test]
    fn the_closure_cache_path_or_none() {
        let (config, errors) = load(&root_with(&[]));
        assert!(errors.is_empty());
        assert_eq!(
            config.closure_cache.as_deref(),
            Some(Utf8Path::new(DEFAULT_CLOSURE_CACHE))
        );
        let (config, errors) = load(&root_with(&[(
            "/etc/systemd/nix-confinement-generator.conf",
            "[Generator]\nClosureCache=\n",
        )]));
        assert!(errors.is_empty());
        assert_eq!(config.closure_cache, None);
        // No longer used: accepted, so that it blocks nothing.
        let (_, errors) = load(&root_with(&[(
            "/etc/systemd/nix-confinement-generator.conf",
            "[Generator]\nDropinStore=/run/nix-confinement-generator/dropins\n",
        )]));
        assert!(errors.is_empty());
        let (_, errors) = load(&root_with(&[(
            "/etc/systemd/nix-confinement-generator.conf",
            "[Generator]\nClosureCache=closures\n",
        )]));
        assert_eq!(
            errors[0].to_string(),
            "/etc/systemd/nix-confinement-generator.conf: [Generator] ClosureCache: \"closures\" is not an absolute path"
        );
    }
}
