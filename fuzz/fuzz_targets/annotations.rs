//! Annotations of a parsed unit: never a panic; a unit that asks to be
//! confined with invalid values still yields a request (blocked, never open),
//! and a request the enable key did not make is blocked.
#![no_main]

use camino::Utf8Path;
use libfuzzer_sys::fuzz_target;
use nix_confinement_generator::annotation::read_annotations;
use nix_confinement_generator::diag::Location;
use nix_confinement_generator::unit::syntax::parse_unit_file;
use nix_confinement_generator::unit::{MergedUnit, Setting};

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = parse_unit_file(data, Utf8Path::new("/fuzz.service")) else { return };
    let unit = MergedUnit {
        name: "fuzz.service".into(),
        sources: vec!["/fuzz.service".into()],
        settings: parsed
            .assignments
            .into_iter()
            .map(|a| Setting {
                section: a.section,
                key: a.key,
                value: a.value,
                location: Location::new("/fuzz.service", a.line),
            })
            .collect(),
        dropin_names: Default::default(),
        warnings: Vec::new(),
    };
    let annotations = read_annotations(&unit, true);
    let asks = unit
        .settings
        .iter()
        .rev()
        .find(|s| s.section == "Service" && s.key == "X-ConfinementEnable")
        .is_some_and(|s| {
            // An empty assignment resets to the default (no); anything but a
            // false spelling asks for confinement (invalid values block).
            !s.value.is_empty()
                && !matches!(s.value.to_ascii_lowercase().as_str(), "0" | "no" | "n" | "false" | "f" | "off")
        });
    if asks {
        assert!(annotations.request.is_some());
    }
    // A request the valid key did not make comes from a key that only shows
    // the intent to confine (misspelt, misplaced): blocked, never confined.
    if annotations.request.is_some() && !asks {
        assert!(!annotations.errors.is_empty());
    }
});
