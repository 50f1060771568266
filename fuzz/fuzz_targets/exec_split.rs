//! Exec line splitting on arbitrary text: never a panic; a program is never
//! empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix_confinement_generator::unit::exec::split_exec_value;

fuzz_target!(|text: &str| {
    if let Ok(commands) = split_exec_value(text) {
        for command in commands {
            assert!(!command.program.is_empty());
        }
    }
});
