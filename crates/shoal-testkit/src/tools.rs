//! External tools a test may need (`redis-cli`, `redis-benchmark`): present, or the test is
//! skipped with a notice, unless `SHOAL_REQUIRE_REDIS=1` (as in CI) makes that a failure.

use std::path::Path;

/// Set to `1` to fail, not skip, tests whose Redis tools are missing.
pub const REQUIRE_ENV: &str = "SHOAL_REQUIRE_REDIS";

/// Whether the programs `names` are all on `PATH`. If not, prints that `test` is skipped and
/// returns false.
///
/// # Panics
/// If some are missing and `SHOAL_REQUIRE_REDIS=1`.
pub fn have_tools(test: &str, names: &[&str]) -> bool {
    let missing = missing_tools(names, std::env::var_os("PATH").as_deref());
    if missing.is_empty() {
        return true;
    }
    let help = format!("{missing:?} not on PATH: install them with `apt-get install redis-tools`");
    assert!(std::env::var(REQUIRE_ENV).as_deref() != Ok("1"), "{help}");
    eprintln!("{test}: SKIPPED: {help}");
    false
}

/// The `names` that no directory of `path` (a `PATH` value) holds.
pub(crate) fn missing_tools<'a>(names: &[&'a str], path: Option<&std::ffi::OsStr>) -> Vec<&'a str> {
    let dirs: Vec<std::path::PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    let on_path = |name: &str| dirs.iter().any(|dir| Path::new(dir).join(name).is_file());
    names.iter().copied().filter(|n| !on_path(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_looked_up_on_the_given_path() {
        let path = std::ffi::OsString::from("/nonexistent:/bin");
        assert_eq!(
            missing_tools(&["sh", "no-such-tool-x"], Some(&path)),
            ["no-such-tool-x"]
        );
        assert_eq!(missing_tools(&["sh"], None), ["sh"]);
    }
}
