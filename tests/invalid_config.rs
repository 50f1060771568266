//! An invalid configuration blocks every annotated unit: for each kind of
//! invalid `nix-confinement-generator.conf` (or drop-in of it), the real
//! generator run gives every annotated unit the blocking drop-in with the
//! configuration's error as its reason and exits 1, `check` exits 1 listing
//! every unit as blocked, and units without annotations stay untouched. The
//! same root with a valid configuration confines them all (so what blocks
//! them is the configuration).

mod support;

use support::{TestRoot, store_path};

const ANNOTATED: [&str; 4] = [
    "plain.service",
    "by-dropin.service",
    "tmpl@.service",
    "tmpl@one.service",
];

/// A root with annotated units of every kind (a unit, one annotated by a
/// drop-in, a template and an instance with a file of its own) and one
/// without annotations, all running a registered store path.
fn root_with_units(name: &str) -> TestRoot {
    let root = TestRoot::new(name);
    let app = store_path(700, "app");
    root.register(&[(&app, &[])]);
    root.write_executable(&format!("{app}/bin/app"), "#!/bin/sh\n");
    let exec = format!("[Service]\nExecStart={app}/bin/app\n");
    let annotated = format!("{exec}X-ConfinementEnable=yes\n");
    root.unit("plain.service", &annotated);
    root.write(
        "/usr/lib/systemd/system/by-dropin.service",
        &format!("[Unit]\nDescription=annotated by a drop-in\n{exec}"),
    );
    root.unit(
        "by-dropin.service.d/confine.conf",
        "[Service]\nX-ConfinementEnable=yes\n",
    );
    root.unit("tmpl@.service", &annotated);
    root.unit("tmpl@one.service", &annotated);
    root.unit("untouched.service", &exec);
    root
}

struct Case {
    name: &'static str,
    /// The configuration files written (logical path, content): a
    /// directory when the content is `None`.
    files: &'static [(&'static str, Option<&'static str>)],
    /// What the reason of each blocked unit must name.
    reason: &'static [&'static str],
}

const MAIN: &str = "/etc/systemd/nix-confinement-generator.conf";
const DROPIN: &str = "/etc/systemd/nix-confinement-generator.conf.d/50-local.conf";

const CASES: &[Case] = &[
    Case {
        name: "value",
        files: &[(MAIN, Some("[Defaults]\nMode=paranoid\n"))],
        reason: &[MAIN, "[Defaults] Mode", "paranoid"],
    },
    Case {
        name: "relative",
        files: &[(MAIN, Some("[Nix]\nStateDir=var/nix\n"))],
        reason: &[MAIN, "[Nix] StateDir", "var/nix"],
    },
    Case {
        name: "unknown",
        files: &[(MAIN, Some("[Generator]\nClosureCashe=/run/x\n"))],
        reason: &[MAIN, "[Generator] ClosureCashe", "unknown setting"],
    },
    Case {
        name: "syntax",
        files: &[(MAIN, Some("[Defaults\nMode=chroot-only\n"))],
        reason: &[MAIN, "cannot parse the configuration"],
    },
    Case {
        name: "in-dropin",
        files: &[
            (MAIN, Some("[Defaults]\nMode=chroot-only\n")),
            (DROPIN, Some("[Defaults]\nBinSh=sh\n")),
        ],
        reason: &[DROPIN, "[Defaults] BinSh", "\"sh\""],
    },
    Case {
        name: "unreadable",
        files: &[(DROPIN, None)],
        reason: &[DROPIN, "cannot read the configuration"],
    },
];

fn write_config(root: &TestRoot, files: &[(&str, Option<&str>)]) {
    for (path, content) in files {
        match content {
            Some(text) => root.write(path, text),
            None => std::fs::create_dir_all(root.path(path)).unwrap(),
        }
    }
}

#[test]
fn an_invalid_configuration_blocks_every_annotated_unit() {
    for case in CASES {
        let root = root_with_units(&format!("config-{}", case.name));
        // The control: valid, everything is confined.
        let run = root.generate();
        assert_eq!(run.status, 0, "{}: {}", case.name, run.stderr);
        for unit in ANNOTATED {
            assert!(
                root.dropin(unit).contains("\nRootDirectory="),
                "{}: {unit} not confined by the valid configuration",
                case.name
            );
        }

        write_config(&root, case.files);
        let run = root.generate();
        assert_eq!(
            run.status, 1,
            "{}: the generator's exit status: {}",
            case.name, run.stderr
        );
        for unit in ANNOTATED {
            let dropin = root.dropin(unit);
            assert!(
                dropin.contains("\nAssertPathExists=!/\n")
                    && dropin.contains(&format!(
                        "Description=BLOCKED by nix-confinement-generator: {}",
                        case.reason[0]
                    ))
                    && !dropin.contains("RootDirectory="),
                "{}: {unit} not blocked by the configuration:\n{dropin}",
                case.name
            );
            let reason = dropin
                .lines()
                .find(|l| l.starts_with("# Reason: "))
                .unwrap_or_else(|| panic!("{}: {unit}: no reason:\n{dropin}", case.name));
            for part in case.reason {
                assert!(
                    reason.contains(part),
                    "{}: {unit}: the reason does not name {part:?}: {reason}",
                    case.name
                );
            }
            // The log says why, for each unit.
            assert!(
                run.stderr
                    .lines()
                    .any(|l| l.contains(unit) && l.contains(case.reason[0])),
                "{}: {unit}: the log does not name the configuration:\n{}",
                case.name,
                run.stderr
            );
        }
        assert!(!root.has_dropin("untouched.service"), "{}", case.name);

        let check = root.run(&["check"]);
        assert_eq!(check.status, 1, "{}: check: {}", case.name, check.stdout);
        for unit in ANNOTATED {
            assert!(
                check.stdout.contains(&format!("\n{unit}: BLOCKED"))
                    || check.stdout.starts_with(&format!("{unit}: BLOCKED")),
                "{}: check does not list {unit} as blocked:\n{}",
                case.name,
                check.stdout
            );
        }
        assert!(
            check.stdout.contains(case.reason[0]) && check.stdout.contains(case.reason[1]),
            "{}: check does not name the configuration's error:\n{}",
            case.name,
            check.stdout
        );
        assert!(
            check.stdout.contains(&format!(
                "{} annotated units, {} blocked",
                ANNOTATED.len(),
                ANNOTATED.len()
            )),
            "{}: {}",
            case.name,
            check.stdout
        );
    }
}

#[test]
fn the_blocking_dropin_of_a_configuration_error_verifies() {
    // The blocking drop-in the configuration causes is one systemd reads
    // without a complaint (its assertion is what fails the start).
    let root = root_with_units("config-verify");
    write_config(&root, CASES[0].files);
    assert_eq!(root.generate().status, 1);
    for unit in ["plain.service", "tmpl@one.service"] {
        let printed = root.verify(unit);
        assert!(
            printed.is_empty(),
            "systemd-analyze verify {unit}:\n{printed}"
        );
    }
}
