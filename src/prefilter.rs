//! A cheap test that lets the planner skip the unit files of units that
//! cannot ask for confinement: no annotation, correct or misspelt, can be
//! written without the letters "confin". Kept while the generation
//! benchmark shows it pays (see benches/README.md).

/// Whether `bytes` hold "confin" in any case. Horspool's search: the byte
/// under the end of the window tells how far the window may move (most
/// bytes are no letter of "confi", and the window moves by six), so that a
/// thousand unit files are not compared byte by byte.
pub fn mentions_confin(bytes: &[u8]) -> bool {
    const NEEDLE: &[u8; 6] = b"confin";
    const SKIP: [u8; 256] = {
        let mut skip = [6u8; 256];
        let mut i = 0;
        while i < 5 {
            skip[NEEDLE[i] as usize] = (5 - i) as u8;
            i += 1;
        }
        skip
    };
    let mut at = 0;
    while at + 6 <= bytes.len() {
        // `| 0x20` makes an ASCII letter lowercase; no other byte becomes
        // a letter of the needle.
        let last = bytes[at + 5] | 0x20;
        if last == b'n' && bytes[at..at + 6].eq_ignore_ascii_case(NEEDLE) {
            return true;
        }
        at += usize::from(SKIP[usize::from(last)]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_confin_finds_it_anywhere_in_any_case() {
        // Against the obvious search, on every placement and case in text
        // made of the needle's own letters (the worst case for skipping).
        let naive = |b: &[u8]| b.windows(6).any(|w| w.eq_ignore_ascii_case(b"confin"));
        let alphabet = b"confiNnCOF x\n=";
        let mut state = 7_u64;
        for length in 0..200 {
            for _ in 0..20 {
                let text: Vec<u8> = (0..length)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        alphabet[(state >> 33) as usize % alphabet.len()]
                    })
                    .collect();
                assert_eq!(
                    mentions_confin(&text),
                    naive(&text),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        for text in [
            "X-ConfinementEnable=yes",
            "confin",
            "xCONFIN",
            "[Service]\nX-CONFINEMENTPACKAGES=a",
            "confi",
            "onfin",
            "",
        ] {
            assert_eq!(
                mentions_confin(text.as_bytes()),
                naive(text.as_bytes()),
                "{text}"
            );
        }
        assert!(mentions_confin(b"..........X-ConfinementEnable"));
    }
}
