//! Arbitrary bytes as a closure cache file: decoding never panics, never
//! allocates beyond the input's size, and what decodes is a well-formed
//! graph (every reference names an entry; encoding it again gives the same
//! bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix_confinement_generator::store::cache::ClosureCache;

fuzz_target!(|bytes: &[u8]| {
    let Ok(cache) = ClosureCache::decode(bytes) else {
        return;
    };
    for i in 0..cache.len() {
        let _ = cache.path(i);
        for &reference in cache.references(i) {
            assert!((reference as usize) < cache.len());
        }
    }
    assert_eq!(cache.encode(), bytes);
});
