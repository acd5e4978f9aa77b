//! The proxy's `INFO`: its own `server`, `clients` and `stats` sections with Redis's field
//! names, a `proxy` section (the cluster map and the upstream client's counters), and
//! `keyspace` summed over the primaries.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use shoal_client::Value;

use super::REDIS_VERSION;
use super::fanout;
use crate::shared::Shared;
use crate::stats::ProxyStats;
use crate::upstream::{Outcome, primaries};

/// Every section, in the order they are printed.
const SECTIONS: &[&str] = &["server", "clients", "stats", "proxy", "keyspace"];

/// The sections `INFO args...` asks for: all of them without arguments or with `default`,
/// `all` or `everything`; otherwise those named.
pub(crate) fn sections(args: &[Bytes]) -> Vec<&'static str> {
    if args.is_empty() {
        return SECTIONS.to_vec();
    }
    SECTIONS
        .iter()
        .copied()
        .filter(|name| {
            args.iter().any(|a| {
                [*name, "all", "everything", "default"]
                    .iter()
                    .any(|n| a.eq_ignore_ascii_case(n.as_bytes()))
            })
        })
        .collect()
}

/// `INFO [section ...]`.
pub(crate) fn info(shared: Arc<Shared>, args: Vec<Bytes>) -> BoxFuture<'static, Outcome> {
    Box::pin(async move {
        let sections = sections(&args[1..]);
        let keyspace = if sections.contains(&"keyspace") {
            fanout::keyspace(&shared.client).await
        } else {
            None
        };
        let text = render(&shared, &sections, keyspace);
        Ok(Value::Verbatim(b"txt".to_vec(), text.into_bytes()))
    })
}

macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
        $out.push_str("\r\n");
    }};
}

/// The text of `sections`; `keyspace` is the summed (keys, expires), if it could be had.
pub(crate) fn render(shared: &Shared, sections: &[&str], keyspace: Option<(u64, u64)>) -> String {
    let mut out = String::with_capacity(2048);
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        match *section {
            "server" => server(shared, &mut out),
            "clients" => clients(shared, &mut out),
            "stats" => stats(shared, &mut out),
            "proxy" => proxy(shared, &mut out),
            "keyspace" => {
                out.push_str("# Keyspace\r\n");
                if let Some((keys, expires)) = keyspace.filter(|(keys, _)| *keys > 0) {
                    line!(out, "db0:keys={keys},expires={expires},avg_ttl=0");
                }
            }
            _ => {}
        }
    }
    out
}

fn server(shared: &Shared, out: &mut String) {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let uptime = shared.started.elapsed().as_secs();
    out.push_str("# Server\r\n");
    line!(out, "redis_version:{REDIS_VERSION}");
    line!(out, "shoal_version:{}", env!("CARGO_PKG_VERSION"));
    line!(out, "shoal_role:proxy");
    line!(out, "redis_git_sha1:00000000");
    line!(out, "redis_git_dirty:0");
    line!(out, "redis_mode:standalone");
    line!(
        out,
        "os:{} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    line!(out, "arch_bits:{}", usize::BITS);
    line!(out, "process_id:{}", std::process::id());
    line!(out, "run_id:{}", shared.run_id);
    line!(out, "tcp_port:{}", shared.resp_addr.port());
    line!(out, "server_time_usec:{now_us}");
    line!(out, "uptime_in_seconds:{uptime}");
    line!(out, "uptime_in_days:{}", uptime / 86_400);
    line!(out, "threads:{}", shared.config.effective_threads());
    line!(
        out,
        "executable:{}",
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
}

fn clients(shared: &Shared, out: &mut String) {
    out.push_str("# Clients\r\n");
    line!(out, "connected_clients:{}", shared.clients.count());
    line!(out, "maxclients:{}", shared.config.maxclients);
    line!(out, "blocked_clients:0");
}

fn stats(shared: &Shared, out: &mut String) {
    let s = &shared.stats;
    let get = ProxyStats::get;
    out.push_str("# Stats\r\n");
    line!(
        out,
        "total_connections_received:{}",
        get(&s.connections_received)
    );
    line!(
        out,
        "total_commands_processed:{}",
        get(&s.commands_processed)
    );
    line!(out, "total_net_input_bytes:{}", get(&s.net_input_bytes));
    line!(out, "total_net_output_bytes:{}", get(&s.net_output_bytes));
    line!(out, "rejected_connections:{}", get(&s.rejected_connections));
    line!(out, "total_error_replies:{}", get(&s.error_replies));
    line!(
        out,
        "client_query_buffer_limit_disconnections:{}",
        get(&s.query_buffer_disconnections)
    );
}

fn proxy(shared: &Shared, out: &mut String) {
    let map = shared.client.map();
    let up = shared.client.stats();
    let us = |d: std::time::Duration| d.as_micros();
    out.push_str("# Proxy\r\n");
    line!(out, "cluster_epoch:{}", map.epoch);
    line!(out, "cluster_nodes:{}", map.nodes.len());
    line!(out, "cluster_primaries:{}", primaries(&map).len());
    line!(out, "cluster_slots_assigned:{}", map.slots_assigned());
    line!(out, "cluster_seeds:{}", shared.config.cluster.join(","));
    line!(out, "upstream_requests:{}", up.requests);
    line!(out, "upstream_errors:{}", up.errors);
    line!(out, "upstream_error_replies:{}", up.server_errors);
    line!(out, "upstream_retries:{}", up.retries);
    line!(out, "upstream_redirects:{}", up.redirects);
    line!(out, "upstream_map_refreshes:{}", up.map_refreshes);
    line!(out, "upstream_connects:{}", up.connects);
    line!(out, "upstream_connection_losses:{}", up.connection_losses);
    line!(out, "upstream_frames_sent:{}", up.frames_sent);
    line!(out, "upstream_socket_writes:{}", up.socket_writes);
    line!(out, "upstream_latency_p50_usec:{}", us(up.latency.p50));
    line!(out, "upstream_latency_p99_usec:{}", us(up.latency.p99));
    line!(out, "upstream_latency_max_usec:{}", us(up.latency.max));
    line!(
        out,
        "proxy_error_replies:{}",
        ProxyStats::get(&shared.stats.proxy_errors)
    );
    line!(
        out,
        "protocol_errors:{}",
        ProxyStats::get(&shared.stats.protocol_errors)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_chosen_as_redis_chooses_them() {
        assert_eq!(sections(&[]), SECTIONS);
        assert_eq!(sections(&[Bytes::from_static(b"ALL")]), SECTIONS);
        assert_eq!(
            sections(&[
                Bytes::from_static(b"keyspace"),
                Bytes::from_static(b"Proxy")
            ]),
            ["proxy", "keyspace"]
        );
        assert!(sections(&[Bytes::from_static(b"memory")]).is_empty());
    }
}
