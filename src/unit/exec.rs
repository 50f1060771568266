//! Splitting `Exec*=` values into commands and words exactly as systemd
//! does (systemd.service(5) "COMMAND LINES", systemd.syntax(7) "Quoting"):
//! the store paths a service runs are found in the words systemd will use.
//! Specifiers (`%n`) and `$VAR` stay verbatim, as systemd expands them after
//! unquoting. Where systemd would drop part of a value, the whole value is
//! refused (fail closed); see [`split_exec_value`] for the rules.

use std::fmt;

/// One command of an `Exec*=` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    /// The prefix characters as written, e.g. `""`, `"-"`, `"@"`, `"!!"`, `"-@:"`.
    pub prefixes: String,
    /// The executable: first word after the prefixes, unquoted and C-unescaped.
    /// It is kept as written; systemd also simplifies it (`//` → `/`) before
    /// executing it.
    pub program: String,
    /// The remaining words, unquoted and C-unescaped. With `@` the first of
    /// them is the `argv[0]` the program gets.
    pub args: Vec<String>,
}

/// An `Exec*=` value that systemd would refuse or partly ignore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSyntaxError {
    /// What is wrong, with the byte offset in the value and the offending text.
    pub message: String,
}

impl fmt::Display for ExecSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExecSyntaxError {}

/// systemd's `WHITESPACE`, the separators `extract_first_word()` uses when given none.
const SEPARATORS: &[u8] = b" \t\n\r";
/// Limits that `path_is_valid()` / `filename_is_valid()` apply to the program.
const PATH_MAX: usize = 4096;
const NAME_MAX: usize = 255;

/// Splits an `Exec*=` value into its commands. An empty or blank value gives
/// no commands (for an empty one, the caller applies the reset).
///
/// This is a transcription of `config_parse_exec()` (src/core/load-fragment.c),
/// which reads every word with `extract_first_word_and_warn(…, NULL,
/// EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE, …)` (src/basic/extract-word.c), which in
/// turn decodes escapes with `cunescape_one()` (src/basic/escape.c). These three
/// were read in the Debian sources of systemd 252.39 and 257.13: the word
/// splitting and unescaping are identical in both. The behaviour was also
/// confirmed against systemd 252 itself: the values of this module's tests, and
/// some 300 000 random ones, were fed to the real `config_parse_exec()` of
/// `libsystemd-core-252.so` and gave the same words, prefixes and errors; and
/// `systemd-analyze verify` reports the same warnings and fatal errors.
///
/// - Words are separated by runs of `" \t\n\r"` (systemd's `WHITESPACE`).
/// - `'…'` and `"…"` may open and close anywhere in a word (`a"b c"d` is
///   `ab cd`); `""` is an empty word. Backslash escapes work inside both kinds
///   of quotes, unlike in a shell.
/// - An unknown or invalid escape (`\q`, `\x4g`, `\400`, `\x00`, `\;x`, `\ `) is
///   kept verbatim, backslash included: systemd retries the word with
///   `EXTRACT_UNESCAPE_RELAX` and only logs a warning. NUL can never be
///   produced (`\x00`, `\000`, `\u0000` stay as written); a trailing lone
///   backslash outside quotes is kept.
/// - `\xHH` and `\NNN` produce one raw byte, `\uXXXX` / `\UXXXXXXXX` a UTF-8
///   encoded code point. Bytes that do not form UTF-8 (`\xff`) cannot be held
///   in a `String` and become U+FFFD; that keeps the word's store paths intact,
///   as U+FFFD, like the raw byte, ends a store path name.
/// - A lone `;` word separates commands, and so does a first word that *unquotes*
///   to `;` (`";"`, `\x3b`); later in a command only a raw unquoted `;` does. A
///   raw `\;` word is a literal `;` argument.
/// - Specifiers are expanded by systemd *after* unquoting, so `\x25i` becomes
///   `%i` and then the instance name. Words here are exactly what systemd hands
///   to its specifier expansion: `%i` comes out verbatim, whether written as
///   `%i` or `\x25i`, and `%%` stays `%%`.
/// - `$VAR` / `${VAR}` are expanded at execution time and also stay verbatim.
///
/// Deliberate differences:
/// - systemd reacts to a bad command in two ways: it refuses to load the unit
///   (`-ENOEXEC`), or it logs the problem and drops that command and every
///   command after it in the same value (it drops them when the `-` prefix is
///   present, or when a command's first word has unbalanced quotes). This
///   function returns an error in both cases: an annotated unit whose `Exec`
///   lines systemd has partly thrown away is blocked (fail closed) instead of
///   being confined around the commands that survived.
/// - A program ending in `/.` or `/..` is refused, as systemd 257 does; 252
///   runs `/bin/true/.` as `/bin/true`.
/// - A program containing `%` skips the checks that only make sense after
///   specifier expansion (absolute path or bare name, length), so a few values
///   that systemd refuses pass here. Harmless: systemd refuses the unit anyway.
/// - A NUL character in the value is an error (systemd's C strings end there).
///
/// # Errors
///
/// When systemd would refuse the value or drop a command of it: an unclosed
/// quote, a command without a program (or, with `@`, without `argv[0]`), a
/// program systemd does not accept, or a NUL character.
pub fn split_exec_value(value: &str) -> Result<Vec<ExecCommand>, ExecSyntaxError> {
    // systemd works on C strings and could never see past a NUL.
    if let Some(at) = value.find('\0') {
        return Err(error(format!("NUL character at byte {at}")));
    }
    let mut words = WordReader { value, pos: 0 };
    let mut commands = Vec::new();
    while let Some(first) = words.next_word()? {
        // config_parse_exec() compares the *unquoted* first word with ";".
        if first.bytes == b";" {
            continue;
        }
        let prefix_len = prefix_len(&first.bytes);
        let (prefixes, program) = first.bytes.split_at(prefix_len);
        let written = &value[first.start..first.end];
        if let Some(problem) = program_problem(program) {
            return Err(error(format!(
                "the command at byte {} {problem}: {}",
                first.start,
                excerpt(written)
            )));
        }
        let mut args = Vec::new();
        while let Some(arg) = words.next_argument()? {
            args.push(into_string(arg));
        }
        if prefixes.contains(&b'@') && args.is_empty() {
            return Err(error(format!(
                "the command at byte {} has the prefix '@' but no argv[0] word after the program: {}",
                first.start,
                excerpt(written)
            )));
        }
        commands.push(ExecCommand {
            prefixes: into_string(prefixes.to_vec()),
            program: into_string(program.to_vec()),
            args,
        });
    }
    Ok(commands)
}

/// Length of the prefix run of `word`, following the state machine of
/// `config_parse_exec()`: each of `-`, `@`, `:` at most once, and at most one of
/// `+`, `!`, `!!`. The first character that does not fit ends the prefixes and
/// starts the program (`+!foo` is `+` and the program `!foo`; `--x` is `-` and `-x`).
fn prefix_len(word: &[u8]) -> usize {
    #[derive(PartialEq)]
    enum Privileges {
        Unchanged,
        Full,       // "+"
        NoSetuid,   // "!"
        AmbientCap, // "!!"
    }
    let (mut ignore_failure, mut argv0, mut no_env) = (false, false, false);
    let mut privileges = Privileges::Unchanged;
    for (i, &c) in word.iter().enumerate() {
        match c {
            b'-' if !ignore_failure => ignore_failure = true,
            b'@' if !argv0 => argv0 = true,
            b':' if !no_env => no_env = true,
            b'+' if privileges == Privileges::Unchanged => privileges = Privileges::Full,
            b'!' if privileges == Privileges::Unchanged => privileges = Privileges::NoSetuid,
            // Other prefixes may come between the two '!' ("!-!" is "-!!").
            b'!' if privileges == Privileges::NoSetuid => privileges = Privileges::AmbientCap,
            _ => return i,
        }
    }
    word.len()
}

/// Why `config_parse_exec()` would reject this program, if it would.
fn program_problem(program: &[u8]) -> Option<&'static str> {
    if program.is_empty() {
        return Some("has no program");
    }
    // string_is_safe(): no control characters, quotes, backslashes or DEL. A
    // specifier cannot remove such a character, so this holds before expansion.
    if program
        .iter()
        .any(|&c| c < b' ' || matches!(c, b'"' | b'\'' | b'\\' | 0x7f))
    {
        return Some("has a program with a quote, backslash or control character");
    }
    // The remaining checks are made after specifier expansion (`%h/bin/x` is an
    // absolute path to systemd), so they cannot be judged here.
    if program.contains(&b'%') {
        return None;
    }
    // path_implies_directory() of 257; 252 only rejects a trailing "/" and would
    // run "/bin/true/." as "/bin/true". The stricter rule is kept.
    if matches!(program, b"." | b"..")
        || [&b"/"[..], b"/.", b"/.."]
            .iter()
            .any(|end| program.ends_with(end))
    {
        return Some("names a directory as its program");
    }
    let valid = if program.starts_with(b"/") {
        // path_is_valid()
        program.len() < PATH_MAX
            && program
                .split(|&c| c == b'/')
                .all(|part| part.len() <= NAME_MAX)
    } else {
        // filename_is_valid(): a bare name, looked up in systemd's fixed search path.
        !program.contains(&b'/') && program.len() <= NAME_MAX
    };
    (!valid).then_some("has a program that is neither an absolute path nor a valid file name")
}

/// A word as extracted: where it was written in the value, and its unquoted,
/// unescaped bytes.
struct Word {
    start: usize,
    end: usize,
    bytes: Vec<u8>,
}

/// Reads words off an `Exec*=` value the way `extract_first_word()` with
/// `EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE` does (plus the `EXTRACT_UNESCAPE_RELAX`
/// retry of `extract_first_word_and_warn()`). Between words `pos` always rests
/// on a non-separator or the end, as systemd's pointer does.
struct WordReader<'a> {
    value: &'a str,
    pos: usize,
}

impl WordReader<'_> {
    /// The next argument of the current command, or `None` at the end of the
    /// value or at a `;` that ends the command.
    fn next_argument(&mut self) -> Result<Option<Vec<u8>>, ExecSyntaxError> {
        // config_parse_exec() checks the *raw* text for `;` and `\;` before
        // unquoting: `";"` and `'\\;'` are ordinary words, `\;` is the word ";".
        let rest = &self.value.as_bytes()[self.pos..];
        let alone = |len: usize| rest.get(len).is_none_or(|c| SEPARATORS.contains(c));
        if rest.starts_with(b";") && alone(1) {
            self.pos += 1;
            self.skip_separators();
            return Ok(None);
        }
        if rest.starts_with(b"\\;") && alone(2) {
            self.pos += 2;
            self.skip_separators();
            return Ok(Some(b";".to_vec()));
        }
        Ok(self.next_word()?.map(|word| word.bytes))
    }

    fn next_word(&mut self) -> Result<Option<Word>, ExecSyntaxError> {
        let bytes = self.value.as_bytes();
        self.skip_separators();
        let start = self.pos;
        if start == bytes.len() {
            return Ok(None);
        }
        let mut word = Vec::new();
        // The open quote character and its offset, for the error message.
        let mut quote: Option<(u8, usize)> = None;
        while let Some(&c) = bytes.get(self.pos) {
            self.pos += 1;
            match (c, quote) {
                (b'\\', _) => self.unescape(&mut word, quote)?,
                (_, Some((open, _))) if c == open => quote = None,
                (b'"' | b'\'', None) => quote = Some((c, self.pos - 1)),
                (_, None) if SEPARATORS.contains(&c) => {
                    self.pos -= 1;
                    break;
                }
                _ => word.push(c),
            }
        }
        if let Some((open, at)) = quote {
            return Err(unterminated_quote(self.value, open, at));
        }
        let end = self.pos;
        self.skip_separators();
        Ok(Some(Word {
            start,
            end,
            bytes: word,
        }))
    }

    /// Handles what follows a backslash (already consumed).
    fn unescape(
        &mut self,
        word: &mut Vec<u8>,
        quote: Option<(u8, usize)>,
    ) -> Result<(), ExecSyntaxError> {
        let rest = &self.value.as_bytes()[self.pos..];
        let Some(&escaped) = rest.first() else {
            // A trailing backslash: kept outside quotes (UNESCAPE_RELAX), an
            // error inside them ("Unbalanced quoting").
            return match quote {
                Some((open, at)) => Err(unterminated_quote(self.value, open, at)),
                None => {
                    word.push(b'\\');
                    Ok(())
                }
            };
        };
        match unescape_one(rest) {
            Some((Unescaped::Byte(byte), len)) => {
                word.push(byte);
                self.pos += len;
            }
            Some((Unescaped::CodePoint(code_point), len)) => {
                push_utf8(word, code_point);
                self.pos += len;
            }
            None => {
                // Unknown escape: kept as written (EXTRACT_UNESCAPE_RELAX). Only
                // the backslash and the next byte are consumed, so whatever
                // follows is read normally.
                word.extend_from_slice(&[b'\\', escaped]);
                self.pos += 1;
            }
        }
        Ok(())
    }

    fn skip_separators(&mut self) {
        let rest = &self.value.as_bytes()[self.pos..];
        self.pos += rest.iter().take_while(|c| SEPARATORS.contains(c)).count();
    }
}

enum Unescaped {
    /// `\xHH`, `\NNN` and the one-letter escapes: one byte, copied as is.
    Byte(u8),
    /// `\uXXXX`, `\UXXXXXXXX`: a code point, UTF-8 encoded.
    CodePoint(u32),
}

/// `cunescape_one()` with `accept_nul = false`: decodes the escape at the start
/// of `rest` (the text after a backslash) and says how many bytes it used, or
/// `None` when it is not a valid escape.
fn unescape_one(rest: &[u8]) -> Option<(Unescaped, usize)> {
    use Unescaped::{Byte, CodePoint};
    let (unescaped, len) = match *rest.first()? {
        b'a' => (Byte(0x07), 1),
        b'b' => (Byte(0x08), 1),
        b'f' => (Byte(0x0c), 1),
        b'n' => (Byte(b'\n'), 1),
        b'r' => (Byte(b'\r'), 1),
        b't' => (Byte(b'\t'), 1),
        b'v' => (Byte(0x0b), 1),
        b'\\' | b'"' | b'\'' => (Byte(rest[0]), 1),
        b's' => (Byte(b' '), 1),
        b'x' => (Byte(digits(rest.get(1..3)?, 16)? as u8), 3),
        b'u' => (CodePoint(digits(rest.get(1..5)?, 16)?), 5),
        b'U' => {
            let code_point = digits(rest.get(1..9)?, 16)?;
            (
                unichar_is_valid(code_point).then_some(CodePoint(code_point))?,
                9,
            )
        }
        b'0'..=b'7' => {
            let value = digits(rest.get(0..3)?, 8)?;
            (Byte(u8::try_from(value).ok()?), 3)
        }
        _ => return None,
    };
    // No escape may produce NUL.
    match unescaped {
        Byte(0) | CodePoint(0) => None,
        _ => Some((unescaped, len)),
    }
}

/// The value of a fixed number of digits in `radix`, or `None` if one is not a digit.
fn digits(text: &[u8], radix: u32) -> Option<u32> {
    text.iter().try_fold(0, |value, &c| {
        Some(value * radix + char::from(c).to_digit(radix)?)
    })
}

/// `unichar_is_valid()` (src/basic/utf8.c), applied to `\U` only: `\u` accepts
/// any non-zero 16-bit value, even a surrogate or U+FFFE.
fn unichar_is_valid(c: u32) -> bool {
    c < 0x0011_0000
        && c & 0xFFFF_F800 != 0xD800
        && !(0xFDD0..=0xFDEF).contains(&c)
        && c & 0xFFFE != 0xFFFE
}

/// `utf8_encode_unichar()`: like `char::encode_utf8`, but it also encodes a
/// surrogate from `\uD800`..`\uDFFF` (as three bytes that are not UTF-8).
fn push_utf8(word: &mut Vec<u8>, code_point: u32) {
    match char::from_u32(code_point) {
        Some(c) => word.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        None => word.extend_from_slice(&[
            0xE0 | (code_point >> 12) as u8,
            0x80 | ((code_point >> 6) & 0x3F) as u8,
            0x80 | (code_point & 0x3F) as u8,
        ]),
    }
}

/// The word as a `String`; bytes that are not UTF-8 (only escapes produce
/// them) become U+FFFD.
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn unterminated_quote(value: &str, open: u8, at: usize) -> ExecSyntaxError {
    error(format!(
        "the quote {} opened at byte {at} is never closed: {}",
        char::from(open),
        excerpt(&value[at..])
    ))
}

fn error(message: String) -> ExecSyntaxError {
    ExecSyntaxError { message }
}

/// `text` in backquotes, cut short so that a huge value does not make a huge message.
fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("`{}…`", &text[..cut]),
        None => format!("`{text}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(value: &str) -> Vec<ExecCommand> {
        split_exec_value(value).unwrap_or_else(|e| panic!("{value:?}: {e}"))
    }

    /// The single command of `value`, as (prefixes, program, args).
    fn one(value: &str) -> (String, String, Vec<String>) {
        let mut commands = split(value);
        assert_eq!(commands.len(), 1, "{value:?} → {commands:?}");
        let c = commands.remove(0);
        (c.prefixes, c.program, c.args)
    }

    fn args_of(value: &str) -> Vec<String> {
        one(value).2
    }

    fn err(value: &str) -> String {
        match split_exec_value(value) {
            Ok(commands) => panic!("{value:?} should fail, gave {commands:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn cmd(prefixes: &str, program: &str, args: &[&str]) -> ExecCommand {
        ExecCommand {
            prefixes: prefixes.into(),
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn empty_and_blank_values_have_no_commands() {
        assert_eq!(split(""), vec![]);
        assert_eq!(split(" \t\r\n "), vec![]);
    }

    #[test]
    fn plain_words_split_on_runs_of_whitespace() {
        assert_eq!(
            split("  /bin/echo a\t\tb \r\n c  "),
            vec![cmd("", "/bin/echo", &["a", "b", "c"])]
        );
        // \v and \f are not separators for systemd (WHITESPACE is " \t\n\r").
        assert_eq!(args_of("/bin/x a\u{b}b\u{c}c"), ["a\u{b}b\u{c}c"]);
    }

    #[test]
    fn quotes_may_open_and_close_anywhere_in_a_word() {
        assert_eq!(args_of(r#"/bin/x a"b c"d"#), ["ab cd"]);
        assert_eq!(
            args_of(r#"/bin/x "a"b'c' 'x "y" z'"#),
            ["abc", r#"x "y" z"#]
        );
        assert_eq!(args_of(r#"/bin/x "" '' """#), ["", "", ""]);
        assert_eq!(one(r#"/bin/"x y" z"#).1, "/bin/x y");
        assert_eq!(
            one(r#""/nix/store/abc-foo/bin/foo" --flag"#).1,
            "/nix/store/abc-foo/bin/foo"
        );
    }

    #[test]
    fn backslash_escapes_inside_both_kinds_of_quotes() {
        assert_eq!(
            args_of(r#"/bin/x 'it\'s' "q\"q" "a\tb" 'c\x2dd'"#),
            ["it's", "q\"q", "a\tb", "c-d"]
        );
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        let message = err(r#"/bin/x "unterminated"#);
        assert!(message.contains("byte 7"), "{message}");
        assert!(message.contains(r#"`"unterminated`"#), "{message}");
        assert!(err("/bin/x 'a b").contains("quote ' opened at byte 7"));
        // systemd logs "Unbalanced quoting" and drops the command even in the
        // first word and with "-"; we refuse the value as a whole (fail closed).
        assert!(err(r#""/bin/x"#).contains("byte 0"));
        assert!(err(r#"-/bin/x "a"#).contains("byte 8"));
        assert!(err(r#"/bin/true ; "/bin/x"#).contains("byte 12"));
        // A backslash at the very end inside a quote is unbalanced too.
        assert!(err(r#"/bin/x "a\"#).contains("byte 7"));
    }

    #[test]
    fn known_escapes_are_decoded() {
        assert_eq!(
            args_of(r#"/bin/x \a\b\f\n\r\t\v \\ \" \' a\sb"#),
            ["\u{7}\u{8}\u{c}\n\r\t\u{b}", "\\", "\"", "'", "a b"]
        );
        assert_eq!(
            args_of(r"/bin/x \x41\x6a \101\152 \u00e9 \U0001F600"),
            ["Aj", "Aj", "é", "😀"]
        );
        // \x and octal give raw bytes, which may combine into UTF-8.
        assert_eq!(args_of(r"/bin/x \xc3\xa9 \303\251"), ["é", "é"]);
    }

    #[test]
    fn escaped_dashes_in_store_paths() {
        let (_, program, args) =
            one(r"/nix/store/abc-e4\x2dx/bin/e4 --conf=/nix/store/def-a\055b.conf");
        assert_eq!(program, "/nix/store/abc-e4-x/bin/e4");
        assert_eq!(args, ["--conf=/nix/store/def-a-b.conf"]);
    }

    #[test]
    fn invalid_escapes_are_kept_verbatim() {
        // cunescape_one() fails; extract_first_word_and_warn() retries with
        // EXTRACT_UNESCAPE_RELAX, which keeps "\" and the next character and
        // reads on from there. Checked against libsystemd-core-252.
        assert_eq!(
            args_of(r"/bin/x \q \d+ a\x0 \x4g \8 \400 \u12 \UFFFE \U00110000 \é"),
            [
                r"\q",
                r"\d+",
                r"a\x0",
                r"\x4g",
                r"\8",
                r"\400",
                r"\u12",
                r"\UFFFE",
                r"\U00110000",
                r"\é"
            ]
        );
        // An escaped space is not an escape: it stays, and joins the two halves.
        assert_eq!(args_of(r"/bin/x a\ b c"), [r"a\ b", "c"]);
        // Valid escapes after an invalid one in the same word are still decoded.
        assert_eq!(args_of(r"/bin/x \q\x41"), [r"\qA"]);
    }

    #[test]
    fn escapes_never_produce_nul() {
        assert_eq!(
            args_of(r"/bin/x \x00 \000 \u0000 \U00000000"),
            [r"\x00", r"\000", r"\u0000", r"\U00000000"]
        );
        assert!(err("/bin/x a\0b").contains("NUL character at byte 8"));
    }

    #[test]
    fn a_trailing_backslash_is_kept() {
        assert_eq!(args_of(r"/bin/x trail\"), [r"trail\"]);
        assert_eq!(args_of(r"/bin/x \"), [r"\"]);
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        assert_eq!(args_of(r"/bin/x \xff \377"), ["\u{FFFD}", "\u{FFFD}"]);
        // A store path ends at the bad byte either way.
        assert_eq!(
            args_of(r"/bin/x /nix/store/abc-foo\xffbar"),
            ["/nix/store/abc-foo\u{FFFD}bar"]
        );
        // \u accepts surrogates (encoded as 3 bytes that are not UTF-8) and U+FFFE.
        assert_eq!(
            args_of(r"/bin/x \ud800 \uFFFE"),
            ["\u{FFFD}\u{FFFD}\u{FFFD}", "\u{FFFE}"]
        );
    }

    #[test]
    fn lone_semicolons_separate_commands() {
        assert_eq!(
            split(r#"/bin/echo one ; /bin/echo "two two""#),
            vec![
                cmd("", "/bin/echo", &["one"]),
                cmd("", "/bin/echo", &["two two"])
            ]
        );
        // Empty commands are skipped, a trailing ";" ends nothing.
        assert_eq!(
            split("; /bin/a ; ; ;\t/bin/b ;"),
            vec![cmd("", "/bin/a", &[]), cmd("", "/bin/b", &[])]
        );
        // The first word is compared after unquoting and unescaping.
        assert_eq!(
            split(r#"";" /bin/a ; \x3b /bin/b"#),
            vec![cmd("", "/bin/a", &[]), cmd("", "/bin/b", &[])]
        );
    }

    #[test]
    fn semicolons_that_do_not_separate() {
        // Only a raw, unquoted, whole ";" word separates; a raw "\;" word is ";".
        assert_eq!(
            args_of(r#"/bin/a ;x ;; a; \; ";" '\\;' \;x a\; "\;""#),
            [";x", ";;", "a;", ";", ";", r"\;", r"\;x", r"a\;", r"\;"]
        );
        // The man page's example: echo gets "/", ">/dev/null", "&", ";", "ls".
        assert_eq!(
            args_of(r"echo / >/dev/null & \; ls"),
            ["/", ">/dev/null", "&", ";", "ls"]
        );
    }

    #[test]
    fn prefixes_are_split_off_the_first_word() {
        assert_eq!(split("-/bin/x a"), vec![cmd("-", "/bin/x", &["a"])]);
        assert_eq!(split("!!/bin/x"), vec![cmd("!!", "/bin/x", &[])]);
        assert_eq!(
            split("-@:+/bin/x argv0 a"),
            vec![cmd("-@:+", "/bin/x", &["argv0", "a"])]
        );
        assert_eq!(split(":-!/bin/x"), vec![cmd(":-!", "/bin/x", &[])]);
        // Others may stand between the two "!" of "!!".
        assert_eq!(one("!-!/bin/x").0, "!-!");
        // Prefixes are found after unquoting and unescaping.
        assert_eq!(
            split(r#""-/bin/x" \x2d/bin/y"#),
            vec![cmd("-", "/bin/x", &["-/bin/y"])]
        );
    }

    #[test]
    fn repeated_or_conflicting_prefixes_end_the_prefix_run() {
        // The character that does not fit starts the program, which must then be
        // an absolute path or a bare file name (config_parse_exec()).
        assert_eq!(one("--foo").0, "-");
        assert_eq!(one("--foo").1, "-foo");
        assert_eq!(one("+!foo").1, "!foo");
        assert_eq!(one("@@foo x").1, "@foo");
        for value in [
            "+!/bin/x",
            "!+/bin/x",
            "!!+/bin/x",
            "!!!/bin/x",
            "++/bin/x",
            "--/bin/x",
            "::/bin/x",
        ] {
            let message = err(value);
            assert!(
                message.contains("neither an absolute path"),
                "{value}: {message}"
            );
        }
    }

    #[test]
    fn at_keeps_argv0_as_the_first_argument() {
        assert_eq!(
            split("@/nix/store/abc-busybox/bin/busybox sh -c true"),
            vec![cmd(
                "@",
                "/nix/store/abc-busybox/bin/busybox",
                &["sh", "-c", "true"]
            )]
        );
        assert!(err("@/bin/x").contains("no argv[0]"));
        // With "-" systemd only drops it; we refuse (fail closed).
        assert!(err("-@/bin/x").contains("no argv[0]"));
        // A separator ends the command before any argv[0].
        assert!(err("@/bin/x ; /bin/y").contains("no argv[0]"));
    }

    #[test]
    fn a_command_needs_a_program() {
        for value in ["-", "@", "-@:+", "!!", r#""""#, r#"-"""#, "/bin/x ; -"] {
            assert!(err(value).contains("has no program"), "{value}");
        }
        assert!(err("/bin/x ; -@").contains("byte 9"));
    }

    #[test]
    fn programs_systemd_refuses() {
        for value in [r"/bin/x\x22", r"/bin/a\q", r"/bin/\x01", r#"/bin/"'""#] {
            assert!(
                err(value).contains("quote, backslash or control"),
                "{value}"
            );
        }
        for value in ["/bin/", "/bin/.", "/bin/..", ".", "..", "/"] {
            assert!(err(value).contains("directory"), "{value}");
        }
        for value in ["bin/x", "./x"] {
            assert!(err(value).contains("neither an absolute path"), "{value}");
        }
        let long_name = "x".repeat(NAME_MAX + 1);
        assert!(err(&long_name).contains("neither"));
        assert!(err(&format!("/bin/{long_name}")).contains("neither"));
        assert!(err(&format!("/{}x", "a/".repeat(PATH_MAX / 2))).contains("neither"));
    }

    #[test]
    fn programs_systemd_accepts() {
        // A bare name is looked up in systemd's fixed search path.
        assert_eq!(one("echo hi").1, "echo");
        assert_eq!(one("/bin//x/./y").1, "/bin//x/./y");
        assert_eq!(
            one(&format!("/bin/{}", "x".repeat(NAME_MAX))).1.len(),
            5 + NAME_MAX
        );
        // After expansion "%h/bin/x" is absolute, so "%" skips the path checks.
        assert_eq!(one("%h/bin/x").1, "%h/bin/x");
    }

    #[test]
    fn specifiers_stay_verbatim() {
        // systemd expands specifiers per word *after* unquoting and unescaping:
        // "\x25n" becomes "%n" and then the unit name. We stop before expansion.
        assert_eq!(
            split(r#"/nix/store/abc-foo/bin/%N "%i" \x25i %% -%n"#),
            vec![cmd(
                "",
                "/nix/store/abc-foo/bin/%N",
                &["%i", "%i", "%%", "-%n"]
            )]
        );
        assert_eq!(args_of("/bin/x $FOO ${BAR} $$"), ["$FOO", "${BAR}", "$$"]);
    }

    #[test]
    fn errors_are_short_even_for_huge_values() {
        let value = format!("/bin/x \"{}", "é".repeat(100_000));
        let message = err(&value);
        assert!(message.len() < 400, "{}", message.len());
    }

    #[test]
    fn huge_values_split_in_linear_time() {
        let words = 200_000;
        let value = format!("/bin/x {}", "a\\x2d'b c' ; /bin/y ".repeat(words / 4));
        let start = std::time::Instant::now();
        let commands = split(&value);
        assert_eq!(commands.len(), words / 4 + 1);
        assert!(start.elapsed().as_secs() < 5);
        // Pairs unescape to one backslash; the odd one out at the end is kept.
        let backslashes = "\\".repeat(1_000_001);
        assert_eq!(
            args_of(&format!("/bin/x {backslashes}")),
            ["\\".repeat(500_001)]
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        // Every prefix of a nasty value, cut at each character boundary.
        let nasty = "-@!!\"/nix/st'ore\\x2\\u00\\U0001F6\\;é ; \\ \"\\\u{1F600}\\303\\x; ';' \\";
        for (cut, _) in nasty.char_indices().chain([(nasty.len(), ' ')]) {
            let _ = split_exec_value(&nasty[..cut]);
            let _ = split_exec_value(&nasty[cut..]);
        }
    }
}
