//! Planning: which services ask for confinement, what blocks each, what
//! its closure starts from (its roots), and what its drop-in is called.
//! Everything here is read from unit files and the configuration; nothing
//! needs the Nix database.

use crate::annotation::{self, Mode, Request};
use crate::config::Config;
use crate::diag::{Diagnostic, Location};
use crate::dropin;
use crate::output::NAME_MAX;
use crate::prefilter;
use crate::rootfs::Root;
use crate::roots::{Roots, collect_roots};
use crate::unit::files::FileReader;
use crate::unit::search_path::unit_search_path;
use crate::unit::{Catalog, Entry, MergedUnit, UnitName};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Our drop-in's file name when no other drop-in of the unit sorts after it.
pub const DROPIN_NAME: &str = "zz-confinement.conf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Template,
    /// An instance with files of its own (a unit file or drop-ins).
    Instance,
}

/// One service the generator has something to say about.
#[derive(Debug, Clone)]
pub struct UnitPlan {
    pub name: String,
    pub kind: Kind,
    pub merged: MergedUnit,
    /// `None` for an instance that opts out of its template's confinement.
    pub request: Option<Request>,
    pub mode: Mode,
    pub roots: Roots,
    /// Problems that block the unit.
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub dropin_name: String,
}

impl UnitPlan {
    pub fn is_blocked(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Whether a drop-in can be written for the unit at all:
    /// `NORMAL/<name>.d/<dropin_name>`, each a file name of at most
    /// [`NAME_MAX`] bytes. A unit name may have 255 bytes and systemd loads
    /// such a unit, but without any drop-in when `<name>.d` is too long.
    pub fn dropin_fits(&self) -> bool {
        self.name.len() + ".d".len() <= NAME_MAX
            && !self.dropin_name.is_empty()
            && self.dropin_name.len() <= NAME_MAX
    }
}

#[derive(Debug)]
pub struct Plan {
    pub config: Config,
    pub catalog: Catalog,
    pub units: Vec<UnitPlan>,
    /// Problems that block every annotated unit (configuration errors).
    pub global_errors: Vec<Diagnostic>,
    /// Problems with no unit to block (other unit types, unreadable files).
    pub warnings: Vec<Diagnostic>,
    /// Units that are not services but ask to be confined: nothing can
    /// confine them, so `check` fails (their errors are in `warnings`).
    pub unconfinable: Vec<String>,
}

/// What the planner tells whoever reads the units' closures meanwhile, on
/// the other CPU (see [`crate::closure::Closures`]).
pub trait Progress {
    /// Every unit file is read (by two threads): from here the planner
    /// works on one CPU.
    fn units_read(&self);
    /// The store paths a unit's closure starts from, as it is planned.
    fn roots_found(&self, roots: Vec<String>);
}

/// No one reads closures meanwhile.
impl Progress for () {
    fn units_read(&self) {}
    fn roots_found(&self, _roots: Vec<String>) {}
}

/// Finds every annotated service under `root` and what blocks it, with the
/// configuration loaded (and its errors), telling `progress` when the unit
/// files are read and the roots of each unit as it is planned (the database
/// can be read meanwhile).
pub fn plan(
    root: &Root,
    (config, global_errors): (Config, Vec<Diagnostic>),
    env_unit_path: Option<&str>,
    progress: &dyn Progress,
) -> Plan {
    let search_path = unit_search_path(root, config.unit_path.as_deref(), env_unit_path);
    let mut reader = FileReader::new(root);
    let catalog = Catalog::scan_reading(root, search_path, &mut reader, &|| progress.units_read());
    let mut warnings = catalog.warnings.clone();
    let mut unconfinable = Vec::new();
    let mut units = Vec::new();

    let candidates = candidate_names(&catalog);
    // Templates come first, so that an instance knows whether its template
    // asks for confinement (an instance opting out must then hide it).
    let mut template_requested: HashMap<String, bool> = HashMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (candidate, _) in &candidates {
        let Some(refs) = catalog.unit_file_refs(candidate) else {
            continue;
        };
        // An alias loads its target's unit, under the target's name.
        if !seen.insert(refs.name.clone()) {
            continue;
        }
        if !files_mention_annotations(&mut reader, refs.readable()) {
            if kind_of(&refs.name) == Kind::Template {
                template_requested.insert(refs.name.clone(), false);
            }
            continue;
        }
        let files = refs.to_owned();
        let name = &files.name;
        let kind = &kind_of(name);
        let is_service = name.ends_with(".service");
        let merged = match MergedUnit::load(&mut reader, &files) {
            Ok(merged) => merged,
            Err(error) if is_service => {
                // systemd refuses the unit too, but we cannot tell whether it
                // asks for confinement: block it, never leave it open.
                units.push(unreadable_unit(
                    name,
                    *kind,
                    files.fragment_path.clone(),
                    error,
                    &config,
                ));
                continue;
            }
            Err(error) => {
                warnings.push(error);
                continue;
            }
        };
        let annotations = annotation::read_annotations(&merged, is_service);
        warnings.extend(annotations.warnings.iter().cloned());
        if !is_service {
            if !annotations.errors.is_empty() {
                unconfinable.push(name.clone());
                warnings.extend(annotations.errors);
            }
            continue;
        }
        let template_wants = UnitName::parse(name)
            .and_then(|n| n.template())
            .and_then(|t| template_requested.get(&t).copied())
            .unwrap_or(false);
        if *kind == Kind::Template {
            template_requested.insert(name.clone(), annotations.request.is_some());
        }
        match annotations.request {
            Some(request) => {
                let unit = plan_unit(root, &config, merged, *kind, request, annotations.errors);
                if !unit.is_blocked() {
                    progress.roots_found(
                        unit.roots
                            .paths
                            .iter()
                            .map(|r| r.store_path.clone())
                            .collect(),
                    );
                }
                units.push(unit);
            }
            // An instance opting out of its template's confinement gets an
            // empty drop-in of the same name, which hides the template's.
            None if *kind == Kind::Instance && template_wants => units.push(UnitPlan {
                name: name.clone(),
                kind: *kind,
                mode: config.default_mode,
                merged,
                request: None,
                roots: Roots::default(),
                errors: Vec::new(),
                warnings: Vec::new(),
                dropin_name: DROPIN_NAME.to_owned(),
            }),
            None => {}
        }
    }
    assign_dropin_names(&mut units);
    for unit in &mut units {
        if unit.request.is_some() {
            unit.errors.extend(global_errors.iter().map(|e| {
                let mut e = e.clone();
                e.unit = Some(unit.name.clone());
                e
            }));
        }
    }
    Plan {
        config,
        catalog,
        units,
        global_errors,
        warnings,
        unconfinable,
    }
}

/// Every unit name worth reading, templates before their instances.
fn candidate_names(catalog: &Catalog) -> Vec<(String, Kind)> {
    // Every name that may load a unit, aliases included (an annotation may
    // live only in an alias's drop-in directory); `plan` reads each unit once,
    // under the name it loads as.
    let mut names: BTreeMap<String, Kind> = BTreeMap::new();
    for (name, entry) in catalog.entries() {
        if !matches!(entry, Entry::Masked { .. }) {
            names.insert(name.to_owned(), kind_of(name));
        }
    }
    // Instances that exist only through their drop-in directories.
    for name in catalog.dropin_dir_units() {
        if UnitName::parse(name).is_some_and(|n| n.is_instance()) && catalog.entry(name).is_none() {
            names.entry(name.to_owned()).or_insert(Kind::Instance);
        }
    }
    // In name order already: a stable sort puts templates first and keeps
    // it (without a copy of each name per comparison).
    let mut ordered: Vec<(String, Kind)> = names.into_iter().collect();
    ordered.sort_by_key(|(_, kind)| *kind != Kind::Template);
    ordered
}

fn kind_of(name: &str) -> Kind {
    match UnitName::parse(name) {
        Some(n) if n.is_template() => Kind::Template,
        Some(n) if n.is_instance() => Kind::Instance,
        _ => Kind::Plain,
    }
}

/// A cheap test before parsing: units whose files never mention
/// "confin" (any case) carry no annotations and no misspelt ones.
fn files_mention_annotations<'a>(
    reader: &mut FileReader<'_>,
    mut files: impl Iterator<Item = &'a camino::Utf8Path>,
) -> bool {
    files.any(|real| match reader.read(real) {
        Ok(bytes) => prefilter::mentions_confin(&bytes),
        // A file we cannot read is handed to the parser, which reports it.
        Err(_) => true,
    })
}

fn unreadable_unit(
    name: &str,
    kind: Kind,
    fragment: camino::Utf8PathBuf,
    error: Diagnostic,
    config: &Config,
) -> UnitPlan {
    UnitPlan {
        name: name.to_owned(),
        kind,
        merged: MergedUnit {
            name: name.to_owned(),
            sources: vec![fragment],
            settings: Vec::new(),
            dropin_names: BTreeSet::new(),
            warnings: Vec::new(),
        },
        request: Some(Request {
            enable: annotation::Located {
                value: true,
                location: None,
            },
            mode: None,
            full_unit: annotation::Located {
                value: false,
                location: None,
            },
            packages: Vec::new(),
            bin_sh: annotation::BinSh::Default,
            host_paths: Vec::new(),
        }),
        mode: config.default_mode,
        roots: Roots::default(),
        errors: vec![error],
        warnings: Vec::new(),
        dropin_name: DROPIN_NAME.to_owned(),
    }
}

fn plan_unit(
    root: &Root,
    config: &Config,
    merged: MergedUnit,
    kind: Kind,
    request: Request,
    mut errors: Vec<Diagnostic>,
) -> UnitPlan {
    let name = merged.name.clone();
    let unit_error = |setting: &crate::unit::Setting, message: String| {
        Diagnostic::error(Some(&name), Some(setting.location.clone()), message)
    };
    for key in ["RootDirectory", "RootImage"] {
        if let Some(setting) = merged.scalar("Service", key) {
            errors.push(unit_error(
                setting,
                format!(
                    "the unit sets {key}={} itself, which conflicts with confinement",
                    setting.value
                ),
            ));
        }
    }
    if let Some(setting) = dropin::own_value(&merged, "RootDirectoryStartOnly")
        && annotation::parse_boolean(&setting.value) == Some(true)
    {
        errors.push(unit_error(
            setting,
            "RootDirectoryStartOnly= is enabled, but systemd cannot restrict bind mounts to \
             ExecStart=: the other commands would run unconfined"
                .to_owned(),
        ));
    }
    let mode = request
        .mode
        .as_ref()
        .map_or(config.default_mode, |m| m.value);
    let mut roots = collect_roots(
        root,
        &config.store_dir,
        config.default_bin_sh.as_deref(),
        &merged,
        &request,
    );
    errors.append(&mut roots.errors);
    let mut warnings = merged.warnings.clone();
    warnings.append(&mut roots.warnings);
    UnitPlan {
        name,
        kind,
        merged,
        request: Some(request),
        mode,
        roots,
        errors,
        warnings,
        dropin_name: DROPIN_NAME.to_owned(),
    }
}

/// Our drop-in must be applied after every other drop-in of the unit, so
/// that none can reset or replace what it sets: `zz-confinement.conf`, or,
/// when some drop-in sorts at or after that name, a name after the last one
/// (see [`dropin_name_after`]). A template and its instances share one name,
/// so that an instance's drop-in hides the template's. A unit for which no
/// drop-in can be written (see [`UnitPlan::dropin_fits`]) gets an error
/// saying so: systemd loads it all the same.
fn assign_dropin_names(units: &mut [UnitPlan]) {
    let mut last_by_family: HashMap<String, String> = HashMap::new();
    for unit in units.iter() {
        let family = family_of(&unit.name);
        if let Some(last) = unit.merged.dropin_names.iter().next_back() {
            let entry = last_by_family.entry(family).or_default();
            if *last > *entry {
                *entry = last.clone();
            }
        }
    }
    // Families whose template is confined: its drop-in applies to every
    // instance, whether or not one of the instance's own can be written.
    let confined_templates: HashSet<String> = units
        .iter()
        .filter(|u| u.kind == Kind::Template && u.request.is_some())
        .map(|u| family_of(&u.name))
        .collect();
    for unit in units.iter_mut() {
        let last = last_by_family.get(&family_of(&unit.name));
        unit.dropin_name = match last {
            // Empty when there is none: the unit cannot be confined.
            Some(last) if last.as_str() >= DROPIN_NAME => {
                dropin_name_after(last).unwrap_or_default()
            }
            _ => DROPIN_NAME.to_owned(),
        };
        if !unit.dropin_fits() {
            let template_confines =
                unit.kind == Kind::Instance && confined_templates.contains(&family_of(&unit.name));
            report_unwritable(unit, last.map(String::as_str), template_confines);
        }
    }
}

/// A drop-in name that sorts after `last` (the name of a drop-in) and fits
/// in a file name: `<last without .conf>~confinement.conf` (`~` sorts after
/// `.`), or, when that is too long, `last` cut before a byte that sorts
/// before `~`, with `~confinement.conf` put there. `None` when no such byte
/// leaves room (the first 239 bytes of `last` are all `~` or not ASCII).
pub fn dropin_name_after(last: &str) -> Option<String> {
    const AFTER: &str = "~confinement.conf";
    let stem = last.strip_suffix(".conf").unwrap_or(last);
    if stem.len() + AFTER.len() <= NAME_MAX {
        return Some(format!("{stem}{AFTER}"));
    }
    // A byte below `~` is ASCII: cutting before it cuts no character.
    let room = NAME_MAX - AFTER.len();
    let cut = last.as_bytes()[..=room.min(last.len() - 1)]
        .iter()
        .rposition(|&b| b < b'~')?;
    Some(format!("{}{AFTER}", &last[..cut]))
}

/// The error (the warning, for an instance opting out of its template's
/// confinement) of a unit for which no drop-in can be written;
/// `template_confines`: it is an instance of a confined template.
fn report_unwritable(unit: &mut UnitPlan, last: Option<&str>, template_confines: bool) {
    let dir_name = format!("{}.d", unit.name);
    let (location, why) = if dir_name.len() > NAME_MAX {
        let location = unit
            .request
            .as_ref()
            .and_then(|r| r.enable.location.clone())
            .or_else(|| unit.merged.sources.first().map(|f| Location::new(f, 0)));
        let why = format!(
            "its drop-in directory {dir_name} would be a file name of {} bytes, more than \
             the {NAME_MAX} Linux allows; give the unit a shorter name",
            dir_name.len()
        );
        (location, why)
    } else {
        let last = last.unwrap_or_default();
        let location = unit
            .merged
            .sources
            .iter()
            .find(|f| f.file_name() == Some(last))
            .map(|f| Location::new(f, 0));
        let why = format!(
            "no file name of at most {NAME_MAX} bytes sorts after its drop-in {last:?}, \
             which would be applied after ours and could undo it; give that drop-in a shorter name"
        );
        (location, why)
    };
    let name = unit.name.clone();
    if unit.request.is_some() {
        let consequence = if template_confines {
            "systemd loads it with its template's drop-in only, not the confinement its own \
             files ask for"
        } else {
            "systemd loads it all the same, without ours, so it starts unconfined"
        };
        unit.errors.push(Diagnostic::error(
            Some(&name),
            location,
            format!("NOT CONFINED: no drop-in can be written for it, and {consequence}: {why}"),
        ));
    } else {
        unit.warnings.push(Diagnostic::warning(
            Some(&name),
            location,
            format!(
                "cannot opt out of its template's confinement: no drop-in can be written for it: {why}"
            ),
        ));
    }
}

/// Templates and their instances form one family; other units are alone.
fn family_of(name: &str) -> String {
    UnitName::parse(name)
        .and_then(|n| n.template())
        .unwrap_or_else(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropin_name_after_any_other_fits_and_sorts_after_it() {
        assert_eq!(
            dropin_name_after("zzz-late.conf").as_deref(),
            Some("zzz-late~confinement.conf")
        );
        // Names of every length up to the longest, of bytes around `~`.
        let pieces = ["z", "~", "\u{e9}", "a", ".", "\u{10ffff}", "-"];
        let mut state = 11_u64;
        let mut none = 0;
        for round in 0..20_000 {
            let mut name = String::from("zz");
            let target = 20 + round % 236;
            while name.len() + ".conf".len() < target {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let piece = pieces[(state >> 33) as usize % pieces.len()];
                if name.len() + piece.len() + ".conf".len() > NAME_MAX {
                    break;
                }
                name.push_str(piece);
            }
            name.push_str(".conf");
            match dropin_name_after(&name) {
                Some(after) => {
                    assert!(after.len() <= NAME_MAX, "{} bytes", after.len());
                    assert!(after.as_bytes() > name.as_bytes(), "{after} <= {name}");
                    assert!(after.ends_with("~confinement.conf"), "{after}");
                }
                None => {
                    // Only when nothing before byte 239 sorts below `~`.
                    assert!(name.as_bytes()[..239].iter().all(|&b| b >= b'~'), "{name}");
                    none += 1;
                }
            }
        }
        assert_eq!(none, 0, "names that begin with zz always leave room");
        let hopeless = format!("{}.conf", "~".repeat(250));
        assert_eq!(dropin_name_after(&hopeless), None);
    }
}
