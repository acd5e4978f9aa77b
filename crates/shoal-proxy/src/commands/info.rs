//! The proxy's `INFO`: its own `server` section, the front door's `clients`, `stats`,
//! `commandstats`, `errorstats` and `latencystats` (as a node has them), a `proxy` section (the
//! cluster map and the upstream client's counters), and `keyspace` summed over the primaries.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use shoal_client::Value;
use shoal_frontdoor::Backend as _;
use shoal_frontdoor::info;

use crate::shared::Shared;
use crate::stats::ProxyStats;
use crate::upstream::Reply;
use shoal_client::primaries;

/// Every section, in the order they are printed.
const ALL_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "stats",
    "commandstats",
    "errorstats",
    "latencystats",
    "proxy",
    "keyspace",
];
/// Sections `INFO` (and `INFO default`) shows: all but the per-command ones, as on a node.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "stats",
    "errorstats",
    "proxy",
    "keyspace",
];

/// The sections `INFO args...` asks for, as Redis chooses them.
pub(crate) fn sections(args: &[Bytes]) -> Vec<&'static str> {
    info::select_sections(args, ALL_SECTIONS, DEFAULT_SECTIONS)
}

/// `INFO [section ...]`.
pub(crate) fn info(shared: Arc<Shared>, args: Vec<Bytes>) -> BoxFuture<'static, Reply> {
    Box::pin(async move {
        let sections = sections(&args[1..]);
        let keyspace = if sections.contains(&"keyspace") {
            shared.client.keyspace_totals().await
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
    info::render(sections, |section, out| match section {
        "server" => server(shared, out),
        "clients" => info::clients(&shared.door, out),
        "stats" => info::stats(&shared.door, out, |_| {}),
        "commandstats" => info::commandstats(&shared.door, out),
        "errorstats" => info::errorstats(&shared.door, out),
        "latencystats" => info::latencystats(&shared.door, out),
        "proxy" => proxy(shared, out),
        "keyspace" => {
            let (keys, expires) = keyspace.unwrap_or_default();
            info::keyspace(out, keys, expires, 0);
        }
        _ => {}
    })
}

fn server(shared: &Shared, out: &mut String) {
    let executable = std::env::current_exe().map(|p| p.display().to_string());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    info::Server {
        shoal_version: env!("CARGO_PKG_VERSION"),
        shoal_role: Some("proxy"),
        mode: shared.mode(),
        os: &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        run_id: shared.door.run_id(),
        tcp_port: shared.resp_addr.port(),
        now_us: now.map_or(0, |d| d.as_micros()),
        uptime_seconds: shared.door.uptime_seconds(),
        node_hz: None,
        threads: shared.config.effective_threads(),
        executable: &executable.unwrap_or_default(),
    }
    .write(out);
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
    line!(out, "hot_keys:{}", shared.client.hot_keys().len());
    line!(out, "hot_key_reads:{}", up.hot_key_reads);
    line!(
        out,
        "hot_write_batch_ms:{}",
        shared.config.hot_write_batch.map_or(0, |w| w.as_millis())
    );
    line!(out, "batched_writes:{}", up.batched_writes);
    line!(out, "write_batches:{}", up.write_batches);
    let copies = shared.config.hot_key_copies;
    line!(out, "hot_key_copies:{}", copies.map_or(0, |c| c.copies));
    line!(
        out,
        "hot_key_copy_ttl_ms:{}",
        copies.map_or(0, |c| c.ttl.as_millis())
    );
    line!(out, "copy_reads:{}", up.copy_reads);
    line!(out, "copy_fills:{}", up.copy_fills);
    line!(out, "copy_drops:{}", up.copy_drops);
    line!(
        out,
        "proxy_error_replies:{}",
        ProxyStats::get(&shared.stats.proxy_errors)
    );
    line!(
        out,
        "protocol_errors:{}",
        shared
            .door
            .stats
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    let near = shared.client.near_cache_stats();
    line!(out, "near_cache_enabled:{}", near.is_some() as u8);
    if let Some(near) = near {
        let max = shared.config.near_cache.map_or(0, |n| n.max_bytes);
        line!(out, "near_cache_max_bytes:{max}");
        for (name, _, value) in near.counters() {
            line!(out, "near_cache_{name}:{value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_chosen_as_redis_chooses_them() {
        assert_eq!(sections(&[]), DEFAULT_SECTIONS);
        assert_eq!(sections(&[Bytes::from_static(b"ALL")]), ALL_SECTIONS);
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
