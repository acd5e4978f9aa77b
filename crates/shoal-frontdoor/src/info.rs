//! What the `INFO` replies of a node and of the proxy share, in Redis 7.0's text format:
//! choosing the sections from the arguments, joining them, the `Server` and `Keyspace`
//! sections' fields (from values the caller gives), and the sections the front door's own
//! counters fill: `Clients`, `Stats` (with the backend's fields in Redis's place),
//! `Commandstats`, `Latencystats` and `Errorstats`.

use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering::Relaxed;

use crate::commands::table;
use crate::connection::REDIS_VERSION;
use crate::door::Door;
use crate::identity::Mode;
use crate::stats::LATENCY_BUCKETS_US;

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
    /// `redis_mode`: the backend's [`Backend::mode`](crate::Backend::mode).
    pub mode: Mode,
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
        field(out, "redis_mode", self.mode.as_str());
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

/// Bytes in Redis's human form (`1.50M`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// Appends the `# Clients` section.
pub fn clients(door: &Door, out: &mut String) {
    let all = door.clients.all();
    let max_query = all.iter().map(|c| c.query_buffer_len()).max().unwrap_or(0);
    let max_output = all.iter().map(|c| c.output_buffer_len()).max().unwrap_or(0);
    out.push_str("# Clients\r\n");
    field(out, "connected_clients", door.clients.count());
    field(out, "cluster_connections", 0);
    field(out, "maxclients", door.settings.maxclients());
    field(out, "client_recent_max_input_buffer", max_query);
    field(out, "client_recent_max_output_buffer", max_output);
    field(out, "blocked_clients", 0);
    field(out, "tracking_clients", door.tracking.stats().clients);
    field(out, "clients_in_timeout_table", 0);
}

/// Appends the `# Stats` section: the front door's fields, with `backend` writing its own
/// where Redis prints them (after `rejected_connections`: replication, keyspace and pub/sub
/// counters).
pub fn stats(door: &Door, out: &mut String, backend: impl FnOnce(&mut String)) {
    let s = &door.stats;
    let (net_in, net_out) = s.net_bytes();
    let (ops, kbps_in, kbps_out) = s.instantaneous();
    let errors: u64 = s.errors().values().sum();
    out.push_str("# Stats\r\n");
    field(
        out,
        "total_connections_received",
        s.connections_received.load(Relaxed),
    );
    field(out, "total_commands_processed", s.total_commands());
    field(out, "instantaneous_ops_per_sec", ops.round() as u64);
    field(out, "total_net_input_bytes", net_in);
    field(out, "total_net_output_bytes", net_out);
    field(
        out,
        "instantaneous_input_kbps",
        format_args!("{kbps_in:.2}"),
    );
    field(
        out,
        "instantaneous_output_kbps",
        format_args!("{kbps_out:.2}"),
    );
    field(
        out,
        "rejected_connections",
        s.rejected_connections.load(Relaxed),
    );
    backend(out);
    // Where Redis prints them, just before the error counts.
    let tracking = door.tracking.stats();
    field(out, "tracking_total_keys", tracking.keys);
    field(out, "tracking_total_items", tracking.items);
    field(out, "tracking_total_prefixes", tracking.prefixes);
    field(out, "total_error_replies", errors);
    field(out, "unknown_commands", s.unknown_commands.load(Relaxed));
    field(out, "command_panics", s.command_panics.load(Relaxed));
    field(
        out,
        "client_query_buffer_limit_disconnections",
        s.query_buffer_disconnections.load(Relaxed),
    );
    field(
        out,
        "client_output_buffer_limit_disconnections",
        s.output_buffer_disconnections.load(Relaxed),
    );
    // Redis 7.2's ACL denial counters.
    let denied = &door.acl.denied;
    field(out, "acl_access_denied_auth", denied.auth.load(Relaxed));
    field(out, "acl_access_denied_cmd", denied.command.load(Relaxed));
    field(out, "acl_access_denied_key", denied.key.load(Relaxed));
    field(
        out,
        "acl_access_denied_channel",
        denied.channel.load(Relaxed),
    );
}

/// Appends the `# Commandstats` section: every command called, refused or failed so far.
pub fn commandstats(door: &Door, out: &mut String) {
    out.push_str("# Commandstats\r\n");
    for (id, totals) in door.stats.command_totals().iter().enumerate() {
        if totals.calls == 0 && totals.rejected == 0 && totals.failed == 0 {
            continue;
        }
        let name = table().name(id as u32).unwrap_or("unknown");
        let per_call = if totals.calls == 0 {
            0.0
        } else {
            totals.usec as f64 / totals.calls as f64
        };
        let _ = write!(
            out,
            "cmdstat_{name}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
            totals.calls, totals.usec, totals.rejected, totals.failed
        );
    }
}

/// Appends the `# Latencystats` section: `latency_percentiles_usec_<command>:p50=..,p99=..,
/// p99.9=..` for every command that ran, read from the latency histogram (each percentile is
/// its bucket's upper bound).
pub fn latencystats(door: &Door, out: &mut String) {
    out.push_str("# Latencystats\r\n");
    let bound = |i: usize| -> f64 {
        match LATENCY_BUCKETS_US.get(i) {
            Some(&us) => us as f64,
            None => (LATENCY_BUCKETS_US[LATENCY_BUCKETS_US.len() - 1] * 2) as f64,
        }
    };
    for (id, totals) in door.stats.command_totals().iter().enumerate() {
        let count: u64 = totals.latency.iter().sum();
        if count == 0 {
            continue;
        }
        let percentile = |p: f64| {
            let rank = ((p / 100.0) * count as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, &n) in totals.latency.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return bound(i);
                }
            }
            bound(totals.latency.len() - 1)
        };
        let name = table().name(id as u32).unwrap_or("unknown");
        let _ = write!(
            out,
            "latency_percentiles_usec_{name}:p50={:.3},p99={:.3},p99.9={:.3}\r\n",
            percentile(50.0),
            percentile(99.0),
            percentile(99.9)
        );
    }
}

/// Appends the `# Errorstats` section.
pub fn errorstats(door: &Door, out: &mut String) {
    out.push_str("# Errorstats\r\n");
    for (code, count) in door.stats.errors() {
        let _ = write!(out, "errorstat_{code}:count={count}\r\n");
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
    fn human_sizes_use_two_decimals() {
        assert_eq!(human_bytes(100), "100B");
        assert_eq!(human_bytes(1536), "1.50K");
        assert_eq!(human_bytes(100 * 1024 * 1024), "100.00M");
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

    fn server(node_hz: Option<u64>, shoal_role: Option<&str>, mode: Mode) -> String {
        let mut out = String::new();
        Server {
            shoal_version: "1.2.3",
            shoal_role,
            mode,
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
        let node = server(Some(10), None, Mode::Cluster);
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
        assert!(node.starts_with("# Server\r\nredis_version:7.4.0\r\nshoal_version:1.2.3\r\n"));
        assert!(node.contains("\r\nredis_mode:cluster\r\n"));
        assert!(node.contains("\r\nuptime_in_days:2\r\nhz:10\r\nconfigured_hz:10\r\n"));
        assert!(node.ends_with("threads:4\r\nexecutable:/bin/shoal\r\n"));
        let proxy = server(None, Some("proxy"), Mode::Standalone);
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
        assert!(proxy.contains("\r\nredis_mode:standalone\r\n"));
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
