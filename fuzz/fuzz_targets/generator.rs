//! The whole generator over a generated root: the input is split into a few
//! unit files and drop-ins (separated by NUL bytes) under a root that has a
//! real Nix database (made once by `nix-store --load-db`). Never a panic,
//! every drop-in written is complete, and every unit that asks for
//! confinement has a drop-in, confined or blocked.
//! The body is in tests/fuzz_bodies/mod.rs, which tests/fuzz_corpus.rs
//! also runs on this target's corpus.
#![no_main]

#[path = "../../tests/fuzz_bodies/mod.rs"]
mod fuzz_bodies;

use std::sync::OnceLock;

fn root() -> &'static fuzz_bodies::GeneratorRoot {
    static ROOT: OnceLock<fuzz_bodies::GeneratorRoot> = OnceLock::new();
    ROOT.get_or_init(|| {
        fuzz_bodies::GeneratorRoot::new(
            format!("/tmp/ncg-fuzz-generator-{}", std::process::id()).into(),
        )
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| root().run(data));
