//! What the `INFO` replies of a node and of the proxy share, in Redis 7.0's text format:
//! choosing the sections from the arguments, joining them, and the fields of the `Server` and
//! `Keyspace` sections. Each server writes its own sections' counters; the values here come
//! from the caller.

use std::fmt::{Display, Write as _};

use crate::connection::REDIS_VERSION;

/// The sections `INFO args...` asks for, in the order of `all`: `default` without arguments;
/// otherwise those named (case-insensitively), every one for `all` or `everything`, and those
/// of `default` for `default`. Unknown names select nothing.
pub fn select_sections<A: AsRef<[u8]>>(
    args: &[A],
    all: &[&'static str],
    default: &[&'static str],
) -> Vec<&'static str> {
    if args.is_empty() {
        return default.to_vec();
    }
    let wanted = |name: &str| {
        args.iter().map(AsRef::as_ref).any(|a| {
            a.eq_ignore_ascii_case(name.as_bytes())
                || a.eq_ignore_ascii_case(b"all")
                || a.eq_ignore_ascii_case(b"everything")
                || (a.eq_ignore_ascii_case(b"default") && default.contains(&name))
        })
    };
    all.iter().copied().filter(|s| wanted(s)).collect()
}

/// The text of `sections`, each written by `section(name, out)`, separated by a blank line.
pub fn render(sections: &[&str], mut section: impl FnMut(&str, &mut String)) -> String {
    let mut out = String::with_capacity(4096);
    for (i, name) in sections.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        section(name, &mut out);
    }
    out
}

/// Appends the line `name:value`.
pub fn field(out: &mut String, name: &str, value: impl Display) {
    let _ = write!(out, "{name}:{value}\r\n");
}

/// The `# Server` section.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    /// `shoal_version`: Shoal's version.
    pub shoal_version: &'a str,
    /// `shoal_role`, printed after `shoal_version` when set (the proxy's `proxy`).
    pub shoal_role: Option<&'a str>,
    /// `os`.
    pub os: &'a str,
    /// `run_id`.
    pub run_id: &'a str,
    /// `tcp_port`.
    pub tcp_port: u16,
    /// `server_time_usec`: now, in microseconds since the Unix epoch.
    pub now_us: u128,
    /// `uptime_in_seconds` (and `uptime_in_days`).
    pub uptime_seconds: u64,
    /// A node's `hz`; with it come the fields only a node prints (`multiplexing_api`,
    /// `process_supervised`, `configured_hz`, `io_threads_active`).
    pub node_hz: Option<u64>,
    /// `threads`.
    pub threads: usize,
    /// `executable`: the path of the running program.
    pub executable: &'a str,
}

impl Server<'_> {
    /// Appends the section, header included.
    pub fn write(&self, out: &mut String) {
        out.push_str("# Server\r\n");
        field(out, "redis_version", REDIS_VERSION);
        field(out, "shoal_version", self.shoal_version);
        if let Some(role) = self.shoal_role {
            field(out, "shoal_role", role);
        }
        field(out, "redis_git_sha1", "00000000");
        field(out, "redis_git_dirty", 0);
        field(out, "redis_mode", "standalone");
        field(out, "os", self.os);
        field(out, "arch_bits", usize::BITS);
        if self.node_hz.is_some() {
            field(out, "multiplexing_api", "epoll");
        }
        field(out, "process_id", std::process::id());
        if self.node_hz.is_some() {
            field(out, "process_supervised", "no");
        }
        field(out, "run_id", self.run_id);
        field(out, "tcp_port", self.tcp_port);
        field(out, "server_time_usec", self.now_us);
        field(out, "uptime_in_seconds", self.uptime_seconds);
        field(out, "uptime_in_days", self.uptime_seconds / 86_400);
        if let Some(hz) = self.node_hz {
            field(out, "hz", hz);
            field(out, "configured_hz", hz);
            field(out, "io_threads_active", 0);
        }
        field(out, "threads", self.threads);
        field(out, "executable", self.executable);
    }
}

/// Appends the `# Keyspace` section: database 0's `keys`, `expires` and `avg_ttl`, when it
/// has keys.
pub fn keyspace(out: &mut String, keys: u64, expires: u64, avg_ttl_ms: u64) {
    out.push_str("# Keyspace\r\n");
    if keys > 0 {
        let _ = write!(
            out,
            "db0:keys={keys},expires={expires},avg_ttl={avg_ttl_ms}\r\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &["server", "clients", "memory", "commandstats", "keyspace"];
    const DEFAULT: &[&str] = &["server", "clients", "memory", "keyspace"];

    #[test]
    fn sections_are_chosen_as_redis_chooses_them() {
        let select = |args: &[&[u8]]| select_sections(args, ALL, DEFAULT);
        assert_eq!(select(&[]), DEFAULT);
        assert_eq!(select(&[b"MEMORY"]), ["memory"]);
        assert_eq!(select(&[b"keyspace", b"server"]), ["server", "keyspace"]);
        assert_eq!(select(&[b"all"]), ALL);
        assert_eq!(select(&[b"Everything"]), ALL);
        assert_eq!(select(&[b"default"]), DEFAULT);
        assert_eq!(
            select(&[b"default", b"commandstats"]),
            ["server", "clients", "memory", "commandstats", "keyspace"]
        );
        assert!(select(&[b"nonsense"]).is_empty());
    }

    #[test]
    fn sections_are_joined_by_blank_lines() {
        let text = render(&["a", "b"], |name, out| {
            out.push_str("# ");
            out.push_str(name);
            out.push_str("\r\n");
            field(out, "x", 1);
        });
        assert_eq!(text, "# a\r\nx:1\r\n\r\n# b\r\nx:1\r\n");
        assert_eq!(render(&[], |_, _| {}), "");
    }

    fn server(node_hz: Option<u64>, shoal_role: Option<&str>) -> String {
        let mut out = String::new();
        Server {
            shoal_version: "1.2.3",
            shoal_role,
            os: "Linux 6.1 x86_64",
            run_id: "abc",
            tcp_port: 6379,
            now_us: 5,
            uptime_seconds: 2 * 86_400 + 1,
            node_hz,
            threads: 4,
            executable: "/bin/shoal",
        }
        .write(&mut out);
        out
    }

    #[test]
    fn server_sections_have_redis_s_fields_in_redis_s_order() {
        let names = |text: &str| -> Vec<String> {
            text.lines()
                .skip(1)
                .map(|l| l.split(':').next().unwrap_or("").to_string())
                .collect()
        };
        let node = server(Some(10), None);
        assert_eq!(
            names(&node),
            [
                "redis_version",
                "shoal_version",
                "redis_git_sha1",
                "redis_git_dirty",
                "redis_mode",
                "os",
                "arch_bits",
                "multiplexing_api",
                "process_id",
                "process_supervised",
                "run_id",
                "tcp_port",
                "server_time_usec",
                "uptime_in_seconds",
                "uptime_in_days",
                "hz",
                "configured_hz",
                "io_threads_active",
                "threads",
                "executable",
            ]
        );
        assert!(node.starts_with("# Server\r\nredis_version:7.0.15\r\nshoal_version:1.2.3\r\n"));
        assert!(node.contains("\r\nuptime_in_days:2\r\nhz:10\r\nconfigured_hz:10\r\n"));
        assert!(node.ends_with("threads:4\r\nexecutable:/bin/shoal\r\n"));
        let proxy = server(None, Some("proxy"));
        assert_eq!(
            names(&proxy)[..4],
            [
                "redis_version",
                "shoal_version",
                "shoal_role",
                "redis_git_sha1"
            ]
        );
        assert!(!proxy.contains("hz:") && !proxy.contains("multiplexing_api"));
    }

    #[test]
    fn keyspaces_show_db0_when_it_has_keys() {
        let mut out = String::new();
        keyspace(&mut out, 0, 0, 0);
        assert_eq!(out, "# Keyspace\r\n");
        out.clear();
        keyspace(&mut out, 3, 1, 20);
        assert_eq!(out, "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=20\r\n");
    }
}
