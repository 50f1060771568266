//! Arbitrary bytes as a closure cache file: decoding never panics, never
//! allocates beyond the input's size, and what decodes is a well-formed
//! graph (every reference names an entry; encoding it again gives the same
//! bytes).
//! The body is in tests/fuzz_bodies/mod.rs, which tests/fuzz_corpus.rs
//! also runs on this target's corpus.
#![no_main]

#[path = "../../tests/fuzz_bodies/mod.rs"]
mod fuzz_bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_bodies::closure_cache(data));
