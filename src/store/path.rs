//! Recognising Nix store paths in text: `<store dir>/<32 characters of Nix
//! base32>-<name>`, the name the longest run of characters Nix allows in
//! names; a subpath (`…-foo/bin/foo`) counts as its store path. A store
//! path counts wherever it occurs in a word (after `-c`, `=`, `file://` or
//! another store path): the NixOS module puts every interpolated store path
//! into the closure and Nix's reference scanner finds a hash anywhere, so a
//! scanner that skipped some positions would leave a path out.

/// Nix's base-32 alphabet (no `e o u t`).
const NIX_BASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
const HASH_LEN: usize = 32;

/// A table, not `NIX_BASE32.contains()`: every hash character of every store
/// path of every closure goes through here.
const HASH_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < NIX_BASE32.len() {
        table[NIX_BASE32[i] as usize] = true;
        i += 1;
    }
    table
};

fn is_hash_char(b: u8) -> bool {
    HASH_CHAR[usize::from(b)]
}

/// Characters Nix allows in a store path name.
pub fn is_name_char(b: u8) -> bool {
    NAME_CHAR[usize::from(b)]
}

/// A table for the same reason as [`HASH_CHAR`]: each cached store path is
/// checked once per run, 15,000 of them on a large system.
const NAME_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.' | b'_' | b'?' | b'=');
        b += 1;
    }
    table
};

/// A store directory such as `/nix/store` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDir(String);

impl StoreDir {
    pub fn new(dir: &str) -> StoreDir {
        let trimmed = dir.trim_end_matches('/');
        StoreDir(if trimmed.is_empty() {
            "/".to_owned()
        } else {
            trimmed.to_owned()
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` is a store path itself (not below one): what
    /// `store_path_of(path) == Some(path)` says, in one pass over the bytes
    /// (every path of the closure cache is checked on every run).
    pub fn is_store_path(&self, path: &str) -> bool {
        let Some(rest) = path
            .as_bytes()
            .strip_prefix(self.0.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"/"))
        else {
            return false;
        };
        rest.len() > HASH_LEN + 1
            && rest[..HASH_LEN].iter().all(|&b| is_hash_char(b))
            && rest[HASH_LEN] == b'-'
            && rest[HASH_LEN + 1..].iter().all(|&b| is_name_char(b))
    }

    /// If `path` is a store path or lies below one, that store path.
    pub fn store_path_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.0.as_str())?.strip_prefix('/')?;
        let len = store_path_suffix_len(rest.as_bytes())?;
        match rest.as_bytes().get(len) {
            None | Some(b'/') => Some(&path[..self.0.len() + 1 + len]),
            Some(_) => None,
        }
    }

    /// Every store path named in `text`, wherever it starts.
    ///
    /// With `specifiers`, `%%` stands for `%` and any other `%x` for text
    /// systemd fills in when the unit is loaded: a store path whose name (or
    /// hash) runs into such a specifier cannot be known in advance and is
    /// reported as [`Found::Unknowable`].
    pub fn scan<'a>(&self, text: &'a str, specifiers: bool) -> Vec<Found<'a>> {
        let bytes = text.as_bytes();
        let dir = self.0.as_bytes();
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(offset) = find(&bytes[from..], dir) {
            let start = from + offset;
            from = start + 1;
            let after_dir = start + dir.len();
            if bytes.get(after_dir) != Some(&b'/') {
                continue;
            }
            let hash_start = after_dir + 1;
            let hash_len = bytes[hash_start..]
                .iter()
                .take(HASH_LEN)
                .take_while(|&&b| is_hash_char(b))
                .count();
            let next = bytes.get(hash_start + hash_len).copied();
            if hash_len < HASH_LEN {
                if specifiers
                    && next == Some(b'%')
                    && bytes.get(hash_start + hash_len + 1) != Some(&b'%')
                {
                    found.push(Found::Unknowable(specifier_context(text, start)));
                }
                continue;
            }
            if next != Some(b'-') {
                continue;
            }
            let name_start = hash_start + HASH_LEN + 1;
            let name_len = bytes[name_start..]
                .iter()
                .take_while(|&&b| is_name_char(b))
                .count();
            let end = name_start + name_len;
            let runs_into_specifier = specifiers
                && bytes.get(end) == Some(&b'%')
                && bytes.get(end + 1).is_some_and(|&b| b != b'%');
            if runs_into_specifier {
                found.push(Found::Unknowable(specifier_context(text, start)));
            } else if name_len > 0 {
                found.push(Found::Path(&text[start..end]));
            }
            from = end.max(from);
        }
        found
    }
}

/// One result of [`StoreDir::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<'a> {
    Path(&'a str),
    /// A store path completed by a specifier; the text up to the end of the
    /// specifier, for the message.
    Unknowable(&'a str),
}

fn specifier_context(text: &str, start: usize) -> &str {
    let rest = &text[start..];
    let end = rest
        .find('%')
        .map_or(rest.len(), |i| (i + 2).min(rest.len()));
    let mut end = end;
    while !rest.is_char_boundary(end) {
        end += 1;
    }
    &rest[..end]
}

/// Length of `<hash>-<name>` at the start of `bytes`, if it is one.
fn store_path_suffix_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() <= HASH_LEN + 1
        || !bytes[..HASH_LEN].iter().all(|&b| is_hash_char(b))
        || bytes[HASH_LEN] != b'-'
    {
        return None;
    }
    let name_len = bytes[HASH_LEN + 1..]
        .iter()
        .take_while(|&&b| is_name_char(b))
        .count();
    (name_len > 0).then_some(HASH_LEN + 1 + name_len)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        match haystack[i..].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => i += p,
        }
        if i + needle.len() <= haystack.len() && &haystack[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_store_path_agrees_with_store_path_of() {
        let dir = StoreDir::new("/nix/store");
        let hash = "0123456789abcdfghijklmnpqrsvwxyz";
        for path in [
            format!("/nix/store/{hash}-foo-1.0"),
            format!("/nix/store/{hash}-foo/bin/foo"),
            format!("/nix/store/{hash}-"),
            format!("/nix/store/{hash}foo"),
            format!("/nix/store/{}-foo", &hash[1..]),
            format!("/nix/store/{}e-foo", &hash[1..]),
            format!("/nix/store/{hash}-foo bar"),
            format!("/nix/store/{hash}-fo\u{e9}"),
            format!("/nix/storex/{hash}-foo"),
            format!("/nix/{hash}-foo"),
            "/etc/shadow".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                dir.is_store_path(&path),
                dir.store_path_of(&path) == Some(path.as_str()),
                "{path:?}"
            );
        }
        assert!(dir.is_store_path(&format!("/nix/store/{hash}-foo-1.0")));
    }

    use super::*;

    const H: &str = "0123456789abcdfghijklmnpqrsvwxyz";

    fn store() -> StoreDir {
        StoreDir::new("/nix/store")
    }

    fn paths(text: &str) -> Vec<String> {
        store()
            .scan(text, true)
            .into_iter()
            .map(|f| match f {
                Found::Path(p) => p.to_owned(),
                Found::Unknowable(t) => format!("UNKNOWABLE {t}"),
            })
            .collect()
    }

    #[test]
    fn finds_paths_in_any_position() {
        let text = format!(
            "/nix/store/{H}-foo-1.2/bin/foo --config=/nix/store/{H}-foo.toml,\"/nix/store/{H}-x\":y"
        );
        assert_eq!(
            paths(&text),
            [
                format!("/nix/store/{H}-foo-1.2"),
                format!("/nix/store/{H}-foo.toml"),
                format!("/nix/store/{H}-x")
            ]
        );
    }

    #[test]
    fn systemd_value_prefixes_before_a_store_path() {
        for prefix in ["-", "+", "!", "@", ":", "-!", "'", "\""] {
            assert_eq!(
                paths(&format!("{prefix}/nix/store/{H}-env")),
                [format!("/nix/store/{H}-env")],
                "{prefix}"
            );
        }
    }

    /// Whatever comes before the store directory, the store path counts:
    /// the NixOS module's string context and Nix's reference scanner find it
    /// anywhere in a word.
    #[test]
    fn store_paths_inside_a_word() {
        const G: &str = "11111111111111111111111111111111";
        // An option letter glued to the path (Debian's wpa_supplicant@.service
        // has `-c/etc/wpa_supplicant/…`).
        assert_eq!(
            paths(&format!("-c/nix/store/{H}-wpa.conf")),
            [format!("/nix/store/{H}-wpa.conf")]
        );
        // Two store paths in one word: `"…-b"'…-c'` unquotes to one word.
        assert_eq!(
            paths(&format!("/nix/store/{H}-b/nix/store/{G}-c")),
            [format!("/nix/store/{H}-b"), format!("/nix/store/{G}-c")]
        );
        assert_eq!(
            paths(&format!("/nix/store/{H}-b.d/x/nix/store/{G}-c")),
            [format!("/nix/store/{H}-b.d"), format!("/nix/store/{G}-c")]
        );
        // After "=", ":", a URL scheme, a path, a letter, a digit, "_", ".".
        for prefix in [
            "--config=",
            "x:",
            "file://",
            "/srv",
            "a",
            "0",
            "_",
            "a.b",
            "-I",
        ] {
            assert_eq!(
                paths(&format!("{prefix}/nix/store/{H}-x")),
                [format!("/nix/store/{H}-x")],
                "{prefix}"
            );
        }
        // The second store path of a word may run into a specifier too.
        assert_eq!(
            paths(&format!("/nix/store/{H}-b/nix/store/{G}-c%i")),
            [
                format!("/nix/store/{H}-b"),
                format!("UNKNOWABLE /nix/store/{G}-c%i")
            ]
        );
    }

    #[test]
    fn name_ends_at_characters_nix_does_not_allow() {
        assert_eq!(
            paths(&format!("/nix/store/{H}-a+b?c=d_e.f:rest")),
            [format!("/nix/store/{H}-a+b?c=d_e.f")]
        );
        assert_eq!(
            paths(&format!("/nix/store/{H}-a b")),
            [format!("/nix/store/{H}-a")]
        );
    }

    #[test]
    fn not_store_paths() {
        let short = &H[..31];
        for text in [
            format!("/nix/store/{short}-x"),
            format!("/nix/store/{H}x"),
            format!("/nix/store/{H}-"),
            format!("/nix/storex/{H}-x"),
            "/nix/store".to_owned(),
            format!("/nix/store/{}-x", "e".repeat(32)),
        ] {
            assert!(paths(&text).is_empty(), "{text}");
        }
    }

    #[test]
    fn specifiers() {
        assert_eq!(
            paths(&format!("/nix/store/{H}-foo%%bar")),
            [format!("/nix/store/{H}-foo")]
        );
        assert_eq!(
            paths(&format!("/nix/store/{H}-foo/%i")),
            [format!("/nix/store/{H}-foo")]
        );
        assert_eq!(
            paths(&format!("/nix/store/{H}-foo%i")),
            [format!("UNKNOWABLE /nix/store/{H}-foo%i")]
        );
        assert_eq!(paths("/nix/store/%i/bin"), ["UNKNOWABLE /nix/store/%i"]);
        // Without specifier processing a % simply ends the name.
        let text = format!("/nix/store/{H}-foo%i");
        let plain: Vec<_> = store().scan(&text, false);
        assert_eq!(plain, [Found::Path(&format!("/nix/store/{H}-foo"))]);
    }

    #[test]
    fn store_path_of_subpaths() {
        let s = store();
        assert_eq!(
            s.store_path_of(&format!("/nix/store/{H}-a/bin/x")),
            Some(&*format!("/nix/store/{H}-a"))
        );
        assert_eq!(
            s.store_path_of(&format!("/nix/store/{H}-a")),
            Some(&*format!("/nix/store/{H}-a"))
        );
        assert_eq!(s.store_path_of(&format!("/nix/store/{H}-a:b")), None);
        assert_eq!(s.store_path_of("/usr/bin/x"), None);
    }

    #[test]
    fn other_store_directories() {
        let s = StoreDir::new("/gnu/store/");
        assert_eq!(s.as_str(), "/gnu/store");
        assert_eq!(
            s.scan(&format!("x /gnu/store/{H}-g"), false),
            [Found::Path(&format!("/gnu/store/{H}-g"))]
        );
    }

    #[test]
    fn never_panics_on_multibyte_text() {
        for text in [
            "/nix/store/é",
            "é/nix/store/%é",
            "/nix/store/%",
            "%/nix/store/0%",
        ] {
            let _ = store().scan(text, true);
        }
    }
}
