//! The unit-file parser on arbitrary bytes: never a panic, and every
//! assignment it returns is well formed.
#![no_main]

use camino::Utf8Path;
use libfuzzer_sys::fuzz_target;
use nix_confinement_generator::unit::syntax::parse_unit_file;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = parse_unit_file(data, Utf8Path::new("/fuzz.service")) {
        let lines = 1 + data.iter().filter(|&&b| matches!(b, b'\n' | b'\r' | 0)).count();
        for a in &parsed.assignments {
            assert!(!a.key.is_empty());
            assert!(a.line >= 1 && a.line as usize <= lines);
            assert!(!a.key.contains('='));
            assert!(!a.value.starts_with([' ', '\t']));
        }
    }
});
