//! The store-path scanner on arbitrary text: never a panic, and every path
//! it finds is a store path by `store_path_of`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix_confinement_generator::store::{Found, StoreDir};

fuzz_target!(|text: &str| {
    let store = StoreDir::new("/nix/store");
    for found in store.scan(text, true) {
        if let Found::Path(path) = found {
            assert_eq!(store.store_path_of(path), Some(path));
        }
    }
    let _ = store.scan(text, false);
    let _ = store.store_path_of(text);
});
