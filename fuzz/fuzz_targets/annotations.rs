//! Annotations of a parsed unit: never a panic; a unit that asks to be
//! confined with invalid values still yields a request (blocked, never open),
//! and a request the enable key did not make is blocked.
//! The body is in tests/fuzz_bodies/mod.rs, which tests/fuzz_corpus.rs
//! also runs on this target's corpus.
#![no_main]

#[path = "../../tests/fuzz_bodies/mod.rs"]
mod fuzz_bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_bodies::annotations(data));
