//! The unit-file parser on arbitrary bytes: never a panic, and every
//! assignment it returns is well formed.
//! The body is in tests/fuzz_bodies/mod.rs, which tests/fuzz_corpus.rs
//! also runs on this target's corpus.
#![no_main]

#[path = "../../tests/fuzz_bodies/mod.rs"]
mod fuzz_bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_bodies::unit_syntax(data));
