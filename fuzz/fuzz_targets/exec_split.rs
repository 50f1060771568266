//! Exec line splitting on arbitrary text: never a panic; a program is never
//! empty.
//! The body is in tests/fuzz_bodies/mod.rs, which tests/fuzz_corpus.rs
//! also runs on this target's corpus.
#![no_main]

#[path = "../../tests/fuzz_bodies/mod.rs"]
mod fuzz_bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_bodies::exec_split(data));
