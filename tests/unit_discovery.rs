//! Golden directory tests of unit discovery and merging (systemd.unit(5);
//! the search path: nix-confinement-generator(8), DESCRIPTION).
//!
//! Each case is a directory `tests/golden/<case>/`:
//!
//! - `root/`: a small root tree (`etc/systemd/system/…`, `usr/lib/…`, …),
//!   regular files only;
//! - `links` (optional): one symlink a line, `path -> target`, `path`
//!   relative to the root, `target` written into the link as is (links to
//!   `/dev/null` and dangling links are awkward in git, so every link of
//!   every case is made here);
//! - `env` (optional): `SYSTEMD_UNIT_PATH=value`, passed to
//!   `unit_search_path` and to the binary;
//! - `units` (optional): more unit names to show, one a line (instances that
//!   have no files of their own, alias names);
//! - `check` (optional, empty): also run `nix-confinement-generator --root
//!   DIR check` and compare its output with `expected-check.txt`;
//! - `expected.txt`: the merged view rendered below, written to be read and
//!   checked by a person;
//! - `README.txt`: what systemd does in this case and why the expected
//!   output is right.
//!
//! `UPDATE_GOLDEN=1 cargo test --test unit_discovery` rewrites the expected
//! files; every rewritten file must then be read and checked by hand against
//! systemd's documented rules (and, where possible, against systemd itself
//! with `tests/golden/systemd-oracle.sh`).

use camino::{Utf8Path, Utf8PathBuf};
use nix_confinement_generator::annotation::{self, BinSh};
use nix_confinement_generator::rootfs::Root;
use nix_confinement_generator::unit::catalog::DropinFile;
use nix_confinement_generator::unit::search_path::unit_search_path;
use nix_confinement_generator::unit::{Catalog, Entry, MergedUnit, UnitName};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::Command;

const GENERATOR: &str = env!("CARGO_BIN_EXE_nix-confinement-generator");

fn golden_dir() -> Utf8PathBuf {
    Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A case's root, copied to a temporary directory with its links made.
struct CaseRoot {
    dir: Utf8PathBuf,
}

impl CaseRoot {
    fn build(case: &str) -> CaseRoot {
        let source = golden_dir().join(case);
        let dir = Utf8PathBuf::from(format!(
            "{}/ncg-golden-{}-{case}",
            std::env::temp_dir().display(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if source.join("root").is_dir() {
            copy_tree(&source.join("root"), &dir);
        }
        for (path, target) in read_links(&source.join("links")) {
            let link = dir.join(&path);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&target, &link)
                .unwrap_or_else(|e| panic!("{case}: cannot link {path} -> {target}: {e}"));
        }
        CaseRoot { dir }
    }
}

impl Drop for CaseRoot {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn copy_tree(from: &Utf8Path, to: &Utf8Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in from.read_dir_utf8().unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let file_type = entry.file_type().unwrap();
        if file_type.is_dir() {
            copy_tree(entry.path(), &target);
        } else if file_type.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        } else {
            panic!(
                "{}: only regular files belong under root/; put links in the case's `links` file",
                entry.path()
            );
        }
    }
}

/// `path -> target` lines; `#` starts a comment line.
fn read_links(file: &Utf8Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (path, target) = line
                .split_once(" -> ")
                .unwrap_or_else(|| panic!("{file}: not `path -> target`: {line}"));
            (
                path.trim().trim_start_matches('/').to_owned(),
                target.trim().to_owned(),
            )
        })
        .collect()
}

fn read_lines(file: &Utf8Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The value of `SYSTEMD_UNIT_PATH` from the case's `env` file.
fn unit_path_env(case: &str) -> Option<String> {
    read_lines(&golden_dir().join(case).join("env"))
        .into_iter()
        .find_map(|line| line.strip_prefix("SYSTEMD_UNIT_PATH=").map(str::to_owned))
}

/// What a link at `logical` says, as written.
fn link_text(root: &Root, logical: &Utf8Path) -> Option<String> {
    let real = root.canonicalize_parent(logical).ok()?;
    let target = std::fs::read_link(root.join(&real)).ok()?;
    Some(target.to_string_lossy().into_owned())
}

fn found(root: &Root, path: &Utf8Path) -> String {
    match link_text(root, path) {
        Some(target) => format!("{path} -> {target}"),
        None => path.to_string(),
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn at(location: &Option<nix_confinement_generator::diag::Location>) -> String {
    location
        .as_ref()
        .map_or_else(|| "default".to_owned(), |l| l.to_string())
}

/// The merged view of every unit of the root.
fn render(root: &Root, case: &str) -> String {
    let env = unit_path_env(case);
    let search_path = unit_search_path(root, None, env.as_deref());
    let catalog = Catalog::scan(root, search_path.clone());
    let mut out = String::new();

    if let Some(env) = &env {
        let _ = writeln!(out, "search path (SYSTEMD_UNIT_PATH={env:?}):");
        for dir in &search_path {
            let _ = writeln!(out, "  {dir}");
        }
        let _ = writeln!(out);
    }

    // What the highest-priority entry of every name is.
    let _ = writeln!(out, "names:");
    let mut blocks: BTreeSet<String> = BTreeSet::new();
    for (name, entry) in catalog.names() {
        let line = match entry {
            Entry::File { path, .. } => {
                blocks.insert(name.to_owned());
                format!("unit file      {}", found(root, path))
            }
            Entry::Masked { path } => format!("masked         {}", found(root, path)),
            Entry::Alias { path, target_name } => {
                format!("alias of {target_name}  {}", found(root, path))
            }
            Entry::InstanceLink { path } => {
                blocks.insert(name.to_owned());
                format!("instance link  {}", found(root, path))
            }
            Entry::Broken { path } => format!("not loadable   {}", found(root, path)),
        };
        let _ = writeln!(out, "  {name:<24} {line}");
    }
    // Instances that exist only through their drop-in directories, and the
    // names the case asks about.
    for name in catalog.dropin_dir_units() {
        if UnitName::parse(name).is_some_and(|n| n.is_instance()) && catalog.entry(name).is_none() {
            blocks.insert(name.to_owned());
        }
    }
    let asked = read_lines(&golden_dir().join(case).join("units"));
    for name in &asked {
        blocks.insert(name.clone());
    }

    for name in &blocks {
        let _ = writeln!(out);
        render_unit(&mut out, root, &catalog, name);
    }

    if !catalog.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings while reading the unit directories:");
        for warning in &catalog.warnings {
            let _ = writeln!(out, "  {warning}");
        }
    }
    out
}

fn render_unit(out: &mut String, root: &Root, catalog: &Catalog, name: &str) {
    let Some(files) = catalog.unit_files(name) else {
        let _ = writeln!(out, "{name}: not loaded (no unit file, or masked)");
        return;
    };
    if files.name != name {
        let _ = writeln!(out, "{name}: loads {} (an alias)", files.name);
        return;
    }
    let _ = writeln!(out, "{name}");
    let real = if files.fragment_real == files.fragment_path {
        String::new()
    } else {
        format!("  (reads {})", files.fragment_real)
    };
    let _ = writeln!(out, "  file     {}{real}", files.fragment_path);
    for alias in catalog.aliases_of(name) {
        let _ = writeln!(out, "  alias    {alias}");
    }
    let applied: BTreeSet<&str> = files.dropins.iter().map(|d| d.file_name.as_str()).collect();
    let by_name: BTreeMap<&str, &DropinFile> = files
        .dropins
        .iter()
        .map(|d| (d.file_name.as_str(), d))
        .collect();
    for file_name in &files.dropin_names {
        match by_name.get(file_name.as_str()) {
            Some(dropin) => {
                let real = match &dropin.real {
                    Some(real) if *real != dropin.path => format!("  (reads {real})"),
                    _ => String::new(),
                };
                let _ = writeln!(out, "  drop-in  {}{real}", dropin.path);
            }
            None if !applied.contains(file_name.as_str()) => {
                let _ = writeln!(
                    out,
                    "  drop-in  {file_name}: masked or not a file (no other {file_name} applies)"
                );
            }
            None => {}
        }
    }
    let merged = match MergedUnit::load(
        &mut nix_confinement_generator::unit::files::FileReader::new(root),
        &files,
    ) {
        Ok(merged) => merged,
        Err(error) => {
            let _ = writeln!(out, "  NOT LOADED: {error}");
            return;
        }
    };
    for setting in &merged.settings {
        let _ = writeln!(
            out,
            "  [{}] {}={}  ({})",
            setting.section, setting.key, setting.value, setting.location
        );
    }
    // Lists reset by an empty assignment after values: what is left.
    let mut reset: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (index, setting) in merged.settings.iter().enumerate() {
        let discards = merged.settings[..index]
            .iter()
            .any(|s| s.section == setting.section && s.key == setting.key && !s.value.is_empty());
        if setting.value.is_empty() && discards {
            reset.insert((&setting.section, &setting.key));
        }
    }
    for (section, key) in reset {
        let left: Vec<String> = merged
            .list(section, key)
            .iter()
            .map(|s| format!("{} ({})", s.value, s.location))
            .collect();
        let left = if left.is_empty() {
            "nothing".to_owned()
        } else {
            left.join(", ")
        };
        let _ = writeln!(out, "  after the last {key}= reset: {left}");
    }
    for warning in &merged.warnings {
        let _ = writeln!(out, "  {warning}");
    }

    let is_service = name.ends_with(".service");
    let annotations = annotation::read_annotations(&merged, is_service);
    if let Some(request) = &annotations.request {
        let _ = writeln!(out, "  confinement requested:");
        let _ = writeln!(
            out,
            "    enable    {}  ({})",
            yes_no(request.enable.value),
            at(&request.enable.location)
        );
        let _ = match &request.mode {
            Some(mode) => writeln!(
                out,
                "    mode      {}  ({})",
                mode.value.as_str(),
                at(&mode.location)
            ),
            None => writeln!(out, "    mode      (configured default)"),
        };
        let _ = writeln!(
            out,
            "    full unit {}  ({})",
            yes_no(request.full_unit.value),
            at(&request.full_unit.location)
        );
        for package in &request.packages {
            let _ = writeln!(
                out,
                "    package   {}  ({})",
                package.value,
                at(&package.location)
            );
        }
        let _ = match &request.bin_sh {
            BinSh::Default => writeln!(out, "    /bin/sh   (configured default)"),
            BinSh::Disabled(location) => writeln!(out, "    /bin/sh   none  ({location})"),
            BinSh::Program(path, location) => {
                writeln!(out, "    /bin/sh   {path}  ({location})")
            }
        };
    }
    for error in &annotations.errors {
        let _ = writeln!(out, "  error: {error}");
    }
    for warning in &annotations.warnings {
        let _ = writeln!(out, "  {warning}");
    }
}

/// The binary's `check` output, with its exit status.
fn run_check(root: &Root, case: &str) -> String {
    let mut command = Command::new(GENERATOR);
    command
        .arg("--root")
        .arg(root.dir().as_str())
        .arg("check")
        .env_remove("SYSTEMD_UNIT_PATH")
        .env_remove("SYSTEMD_LOG_LEVEL")
        .env_remove("SYSTEMD_LOG_TARGET");
    if let Some(env) = unit_path_env(case) {
        command.env("SYSTEMD_UNIT_PATH", env);
    }
    let output = command.output().expect("run the generator");
    let text = format!(
        "{}{}exit status: {}\n",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status.code().unwrap_or(-1)
    );
    // Nothing the root's location shows through, but make sure of it.
    text.replace(root.dir().as_str(), "$ROOT")
}

/// Compares with the expected file, or rewrites it under `UPDATE_GOLDEN=1`.
fn compare(case: &str, file_name: &str, actual: &str) -> Option<String> {
    let path = golden_dir().join(case).join(file_name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "{path} differs (- expected, + actual; UPDATE_GOLDEN=1 rewrites it, \
             then check it by hand):\n{}",
            diff(&expected, actual)
        )
    })
}

/// A line diff (longest common subsequence), enough for small files.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        }
    }
    out
}

fn run_case(case: &str) {
    let case_dir = golden_dir().join(case);
    assert!(case_dir.is_dir(), "{case_dir} is missing");
    assert!(
        case_dir.join("README.txt").is_file(),
        "{case}: every case says in README.txt why its expected output is right"
    );
    let case_root = CaseRoot::build(case);
    let root = Root::new(case_root.dir.clone());
    let mut problems = Vec::new();
    problems.extend(compare(case, "expected.txt", &render(&root, case)));
    if case_dir.join("check").exists() {
        problems.extend(compare(case, "expected-check.txt", &run_check(&root, case)));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

macro_rules! golden {
    ($($(#[$attr:meta])* $test:ident => $case:literal,)*) => {
        $(
            $(#[$attr])*
            #[test]
            fn $test() {
                run_case($case);
            }
        )*

        /// Every directory under tests/golden is a case with a test.
        #[test]
        fn every_case_directory_has_a_test() {
            let listed: BTreeSet<&str> = [$($case),*].into_iter().collect();
            let mut on_disk = BTreeSet::new();
            for entry in golden_dir().read_dir_utf8().unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    on_disk.insert(entry.file_name().to_owned());
                }
            }
            let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
            assert_eq!(on_disk, listed);
        }
    };
}

golden! {
    aliases => "aliases",
    annotation_from_etc_dropin => "annotation-from-etc-dropin",
    annotation_intent => "annotation-intent",
    annotation_warnings => "annotation-warnings",
    dash_prefix => "dash-prefix",
    etc_replaces_usr_lib => "etc-replaces-usr-lib",
    instance_dash_prefix => "instance-dash-prefix",
    lexical_order => "lexical-order",
    linked_unit_files => "linked-unit-files",
    links_ignored_or_hiding => "links-ignored-or-hiding",
    list_resets => "list-resets",
    masked_dropin => "masked-dropin",
    masks => "masks",
    nixos_linked_directory => "nixos-linked-directory",
    parser_bom_and_line_ends => "parser-bom-and-line-ends",
    parser_nasties => "parser-nasties",
    same_name_hiding => "same-name-hiding",
    search_path_order => "search-path-order",
    template_aliases => "template-aliases",
    templates => "templates",
    type_dropins => "type-dropins",
    unit_path_env_appends => "unit-path-env-appends",
    unit_path_env_replaces => "unit-path-env-replaces",
    wants_requires_ignored => "wants-requires-ignored",
}
