//! One-shot commands (the `shoal` CLI, `redis-cli`, a script) run to their end within a time
//! limit, as a test runs them: a command that hangs fails the test instead of hanging it.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a running command is looked at.
const POLL: Duration = Duration::from_millis(10);

/// Runs `command` with its stdin closed and its stdout and stderr captured, and returns its
/// output once it has ended ([`output_within`]). Blocks: async code runs it on a blocking
/// thread (`tokio::task::spawn_blocking`).
pub fn run_within(mut command: Command, within: Duration, what: &str) -> Result<Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("cannot start {what}"), e))?;
    output_within(child, within, what)
}

/// The output of `child` once it has ended (what it wrote to piped stdout and stderr). After
/// `within` it is killed, and the error holds what it had written. Blocks.
pub fn output_within(mut child: Child, within: Duration, what: &str) -> Result<Output> {
    let started = Instant::now();
    loop {
        let ended = child
            .try_wait()
            .map_err(|e| Error::io(format!("cannot wait for {what}"), e))?;
        if ended.is_some() {
            return child
                .wait_with_output()
                .map_err(|e| Error::io(format!("cannot read what {what} wrote"), e));
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let output = child.wait_with_output();
            return Err(Error::Timeout {
                what: format!("{what} to end (it was killed)"),
                waited: within,
                detail: format!("{output:?}"),
            });
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_s_output_is_returned_and_a_hanging_one_is_killed() {
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo out; echo err >&2"]);
        let output = run_within(echo, Duration::from_secs(10), "sh").unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");

        let mut sleeper = Command::new("sleep");
        sleeper.arg("30");
        let started = Instant::now();
        let err = run_within(sleeper, Duration::from_millis(100), "sleep").unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
