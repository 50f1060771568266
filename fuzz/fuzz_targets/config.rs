//! The generator's configuration on arbitrary text: never a panic; whatever
//! is accepted is absolute.
#![no_main]

use camino::Utf8Path;
use libfuzzer_sys::fuzz_target;
use nix_confinement_generator::config::{Config, apply_text};

fuzz_target!(|text: &str| {
    let mut config = Config::default();
    let _ = apply_text(&mut config, text, Utf8Path::new("/etc/systemd/nix-confinement-generator.conf"));
    assert!(config.store_dir.as_str().starts_with('/'));
    assert!(config.state_dir.as_str().starts_with('/'));
    if let Some(path) = &config.default_bin_sh {
        assert!(path.as_str().starts_with('/'));
    }
});
