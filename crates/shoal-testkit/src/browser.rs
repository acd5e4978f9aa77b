//! A page as a browser shows it: headless Chromium (Debian's `chromium`, see
//! [`crate::tools::have_chromium`]) renders a URL in a profile of its own, runs the page's
//! scripts for a budget of virtual time, and dumps the DOM they left (`--dump-dom`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::testdir::TestDir;

/// The browser's program.
pub const CHROMIUM: &str = "chromium";

/// The DOM of `url` once its scripts have run for `budget` of virtual time (timers fire
/// sooner than in real time; time stands still while a fetch is pending), as HTML. The
/// browser is killed if it has not finished within `timeout` of real time.
pub async fn dump_dom(url: &str, budget: Duration, timeout: Duration) -> Result<String> {
    let dir = TestDir::new("chromium")?;
    let out = dir.path().join("dom.html");
    let err = dir.path().join("chromium.log");
    let file = |path: &Path| {
        std::fs::File::create(path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))
    };
    let mut child = Command::new(CHROMIUM)
        .args(flags(&dir.path().join("profile"), budget))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(file(&out)?)
        .stderr(file(&err)?)
        .spawn()
        .map_err(|source| Error::Spawn {
            binary: CHROMIUM.into(),
            source,
        })?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io("cannot wait for chromium", e))?
        {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout {
                what: format!("chromium to render {url}"),
                waited: timeout,
                detail: std::fs::read_to_string(&err).unwrap_or_default(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dom = std::fs::read_to_string(&out)
        .map_err(|e| Error::io(format!("cannot read {}", out.display()), e))?;
    if !status.success() || dom.is_empty() {
        return Err(Error::Usage(format!(
            "chromium rendering {url} ended with {status} and {} bytes of DOM:\n{}",
            dom.len(),
            std::fs::read_to_string(&err).unwrap_or_default()
        )));
    }
    Ok(dom)
}

/// Headless, without the sandbox (tests run as root), in a fresh profile at `profile`, with
/// nothing fetched but what the page asks for, and `budget` of virtual time for its scripts.
fn flags(profile: &Path, budget: Duration) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .into_iter()
    .map(str::to_string)
    .chain([
        format!("--user-data-dir={}", profile.display()),
        format!("--virtual-time-budget={}", budget.as_millis()),
    ])
    .collect()
}
