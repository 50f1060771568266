//! Scratch directories for the unit tests.

use camino::Utf8PathBuf;

/// `$TMPDIR/ncg-NAME-PID`, empty: what an earlier run of the test left there
/// is removed. Each test names its own, so tests running at once never
/// share one.
pub fn fresh(name: &str) -> Utf8PathBuf {
    let dir = Utf8PathBuf::from(format!(
        "{}/ncg-{name}-{}",
        std::env::temp_dir().display(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
