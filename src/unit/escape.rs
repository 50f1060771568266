//! Values written into unit files so that systemd reads back what we
//! mean: paths in bind settings, words of Exec lines (systemd.syntax(7),
//! systemd.exec(5)).

/// Bytes that need no escaping in a bind path: printable ASCII except
/// `% : \\ " '`.
const PLAIN_PATH_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !matches!(b as u8, b'%' | b':' | b'\\' | b'"' | b'\'');
        b += 1;
    }
    table
};

/// A path in a bind setting (`BindReadOnlyPaths=SRC:DST`): systemd unquotes
/// the value and splits it at `:` and white space, then expands specifiers.
pub fn escape_path(path: &str) -> std::borrow::Cow<'_, str> {
    // Nearly every path is a plain store path: check with a table, not a
    // per-character match.
    let plain = path.bytes().all(|b| PLAIN_PATH_BYTE[usize::from(b)]);
    if plain {
        return path.into();
    }
    let mut out = String::with_capacity(path.len() + 8);
    for c in path.chars() {
        match c {
            '%' => out.push_str("%%"),
            ':' | '\\' | '"' | '\'' | ' ' | '\t' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.into()
}

/// A word of an Exec line that systemd reads back as `word`: quoted when
/// it holds a space or a quote, `%` doubled (a specifier otherwise).
pub fn escape_exec_word(word: &str) -> String {
    let word = word.replace('%', "%%");
    if word.contains([' ', '\t', '"', '\'', '\\']) {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_paths_are_escaped() {
        assert_eq!(escape_path("/nix/store/abc-x"), "/nix/store/abc-x");
        assert_eq!(escape_path("/a b:c%d\\e"), "/a\\ b\\:c%%d\\\\e");
    }

    #[test]
    fn exec_words_are_quoted_and_specifiers_doubled() {
        assert_eq!(escape_exec_word("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(escape_exec_word("/a b/100%"), "\"/a b/100%%\"");
        assert_eq!(escape_exec_word("/a\"b"), "\"/a\\\"b\"");
    }
}
