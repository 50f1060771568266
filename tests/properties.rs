//! The invariants the fuzz targets check (fuzz/fuzz_targets/), stated as
//! property tests over deterministic pseudo-random inputs, so that the normal
//! suite keeps them: never a panic, every assignment well formed, every store
//! path found is one, a unit that asks to be confined always yields a
//! request (blocked when invalid, never open), and a request the enable key
//! did not make is blocked.

use camino::Utf8Path;
use nix_confinement_generator::annotation::read_annotations;
use nix_confinement_generator::diag::Location;
use nix_confinement_generator::store::{Found, StoreDir};
use nix_confinement_generator::unit::exec::split_exec_value;
use nix_confinement_generator::unit::syntax::parse_unit_file;
use nix_confinement_generator::unit::{MergedUnit, Setting};

/// Fragments that make interesting unit files when strung together.
const PIECES: &[&str] = &[
    "[Service]\n",
    "[Unit]\n",
    "[X-Mine]\n",
    "X-ConfinementEnable=yes\n",
    "X-ConfinementEnable=no\n",
    "X-ConfinementEnable=\n",
    "X-ConfinementEnable=perhaps\n",
    "X-ConfinementEnabled=yes\n",
    "x-confinementenable=no\n",
    "[Install]\n",
    "X-ConfinementMode=chroot-only\n",
    "X-ConfinementPackages=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a \\\n",
    "# comment\n",
    "; comment\n",
    "ExecStart=-@/nix/store/0123456789abcdfghijklmnpqrsvwxyz-app/bin/x \"a b\" \\x2d %i\n",
    "ExecStart=\n",
    "  Key = value  \n",
    "\\\\\n",
    "\\\n",
    "\n",
    "\r\n",
    "=\n",
    "[broken\n",
    "é\u{0}\u{7f}",
    "%%n",
    "'",
    "\"",
    "/nix/store/",
    "-/nix/store/0123456789abcdfghijklmnpqrsvwxyz-e4\\x2dx",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self) -> String {
        let pieces = self.next() % 24;
        (0..pieces)
            .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
            .collect()
    }
}

const CASES: usize = 5_000;

#[test]
fn parsed_assignments_are_well_formed() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..CASES {
        let text = rng.text();
        let Ok(parsed) = parse_unit_file(text.as_bytes(), Utf8Path::new("/u.service")) else {
            continue;
        };
        let lines = 1 + text
            .bytes()
            .filter(|&b| matches!(b, b'\n' | b'\r' | 0))
            .count();
        for a in &parsed.assignments {
            assert!(!a.key.is_empty() && !a.key.contains('='), "{text:?}: {a:?}");
            assert!(a.line >= 1 && a.line as usize <= lines, "{text:?}: {a:?}");
            assert!(
                !a.value.starts_with([' ', '\t']) && !a.value.ends_with([' ', '\t']),
                "{text:?}"
            );
        }
    }
}

#[test]
fn every_store_path_found_is_a_store_path() {
    let store = StoreDir::new("/nix/store");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..CASES {
        let text = rng.text();
        for found in store.scan(&text, true) {
            if let Found::Path(path) = found {
                assert_eq!(store.store_path_of(path), Some(path), "{text:?}");
            }
        }
        if let Ok(commands) = split_exec_value(&text) {
            assert!(commands.iter().all(|c| !c.program.is_empty()), "{text:?}");
        }
    }
}

#[test]
fn asking_for_confinement_always_yields_a_request() {
    let mut rng = Rng(0x5851_f42d_4c95_7f2d);
    for _ in 0..CASES {
        let text = rng.text();
        let Ok(parsed) = parse_unit_file(text.as_bytes(), Utf8Path::new("/u.service")) else {
            continue;
        };
        let unit = MergedUnit {
            name: "u.service".into(),
            sources: vec!["/u.service".into()],
            settings: parsed
                .assignments
                .into_iter()
                .map(|a| Setting {
                    section: a.section,
                    key: a.key,
                    value: a.value,
                    location: Location::new("/u.service", a.line),
                })
                .collect(),
            dropin_names: Default::default(),
            warnings: Vec::new(),
        };
        let asks = unit
            .settings
            .iter()
            .rev()
            .find(|s| s.section == "Service" && s.key == "X-ConfinementEnable")
            .is_some_and(|s| {
                !s.value.is_empty()
                    && !matches!(
                        s.value.to_ascii_lowercase().as_str(),
                        "0" | "no" | "n" | "false" | "f" | "off"
                    )
            });
        let annotations = read_annotations(&unit, true);
        if asks {
            assert!(annotations.request.is_some(), "{text:?}");
        }
        // A request the valid key did not make comes from a key that only
        // shows the intent to confine: it is blocked, never confined.
        if annotations.request.is_some() && !asks {
            assert!(!annotations.errors.is_empty(), "{text:?}");
        }
    }
}
