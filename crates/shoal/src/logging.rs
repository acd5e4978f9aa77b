//! Log output: human-readable lines by default, JSON lines on request, to stderr. Colours only
//! when stderr is a terminal (a log file gets plain text); Raft's own logs (openraft's state
//! dumps) at warn unless the filter names openraft.

use std::io::IsTerminal as _;

use shoal_server::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global logger. `RUST_LOG`, when set, overrides `level`.
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let from_env = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(with_quiet_raft(&v)).ok());
    let filter = match from_env {
        Some(filter) => filter,
        None => EnvFilter::try_new(with_quiet_raft(level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// `directives` with openraft held at warn, unless they say something about openraft.
fn with_quiet_raft(directives: &str) -> String {
    if directives.contains("openraft") {
        directives.to_string()
    } else if directives.trim().is_empty() {
        "openraft=warn".to_string()
    } else {
        format!("{directives},openraft=warn")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_stays_at_warn_unless_asked_for() {
        assert_eq!(with_quiet_raft("info"), "info,openraft=warn");
        assert_eq!(with_quiet_raft("debug"), "debug,openraft=warn");
        assert_eq!(
            with_quiet_raft("info,openraft=debug"),
            "info,openraft=debug"
        );
        assert_eq!(with_quiet_raft(""), "openraft=warn");
    }
}
