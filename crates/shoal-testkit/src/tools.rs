//! What a test may need from the machine (`redis-cli`, `redis-benchmark`, `redis-server`,
//! `chromium`, network namespaces): present, or the test is skipped with a notice, unless
//! `SHOAL_REQUIRE_REDIS=1` (as `.ci/run` sets it) makes that a failure. Every such test asks
//! [`runnable`], so none can be skipped in CI.

use std::path::Path;

/// Set to `1` to fail, not skip, tests whose tools are missing.
pub const REQUIRE_ENV: &str = "SHOAL_REQUIRE_REDIS";

/// Whether `test` can run: `missing` says what it lacks (`None`: nothing). If something is
/// missing, prints that `test` is skipped and why, and returns false.
///
/// # Panics
/// If something is missing and `SHOAL_REQUIRE_REDIS=1`.
pub fn runnable(test: &str, missing: Option<String>) -> bool {
    let Some(help) = missing else {
        return true;
    };
    assert!(
        std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
        "{test}: {help} (and {REQUIRE_ENV}=1 forbids skipping)"
    );
    eprintln!("{test}: SKIPPED: {help}");
    false
}

/// Whether the Redis tools `names` (`redis-cli`, `redis-benchmark`) are all on `PATH`; if
/// not, `test` is skipped as [`runnable`] says.
pub fn have_tools(test: &str, names: &[&str]) -> bool {
    have_packaged(test, names, "redis-tools")
}

/// Whether `chromium` (Debian's package of that name), which renders pages headless for the
/// tests of what a browser shows, is on `PATH`; if not, `test` is skipped as [`runnable`]
/// says.
pub fn have_chromium(test: &str) -> bool {
    have_packaged(test, &[crate::browser::CHROMIUM], "chromium")
}

/// Whether the programs `names`, which Debian's `package` installs, are all on `PATH`; if
/// not, `test` is skipped as [`runnable`] says.
fn have_packaged(test: &str, names: &[&str], package: &str) -> bool {
    let missing = missing_tools(names, std::env::var_os("PATH").as_deref());
    runnable(
        test,
        (!missing.is_empty()).then(|| {
            format!("{missing:?} not on PATH: install them with `apt-get install {package}`")
        }),
    )
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
