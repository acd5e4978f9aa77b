//! The `INFO` text, with Redis 7's section and field names, read from the same counters as
//! `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use shoal_proto::info;

use crate::process;
use crate::shared::Shared;

/// Every section, in the order Redis 7.0 prints them.
const ALL_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "keyspace",
];
/// Sections `INFO` (and `INFO default`) shows: all but the per-command ones.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];

/// Resolves `INFO`'s arguments to the sections to show, in Redis's order.
pub fn sections(args: &[&[u8]]) -> Vec<&'static str> {
    info::select_sections(args, ALL_SECTIONS, DEFAULT_SECTIONS)
}

/// Renders the given sections.
pub fn render(shared: &Shared, sections: &[&str]) -> String {
    info::render(sections, |section, out| match section {
        "server" => server(shared, out),
        "clients" => clients(shared, out),
        "memory" => memory(shared, out),
        "persistence" => persistence(shared, out),
        "stats" => stats(shared, out),
        "replication" => replication(shared, out),
        "cpu" => cpu(out),
        // No modules: Redis prints the bare header.
        "modules" => out.push_str("# Modules\r\n"),
        "commandstats" => commandstats(shared, out),
        "errorstats" => errorstats(shared, out),
        "latencystats" => latencystats(shared, out),
        "cluster" => {
            let enabled = u8::from(shared.cluster.is_some());
            out.push_str(&format!("# Cluster\r\ncluster_enabled:{enabled}\r\n"));
        }
        "keyspace" => {
            let stats = shared.store.stats();
            let (keys, expires) = (stats.keys as u64, stats.volatile_keys as u64);
            info::keyspace(out, keys, expires, stats.avg_ttl_ms);
        }
        _ => {}
    })
}

macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
        $out.push_str("\r\n");
    }};
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

fn server(shared: &Shared, out: &mut String) {
    let config = shared.config.read();
    info::Server {
        shoal_version: env!("CARGO_PKG_VERSION"),
        shoal_role: None,
        os: &process::os_description(),
        run_id: &shared.run_id,
        tcp_port: shared.resp_addr.read().map_or(config.port, |a| a.port()),
        now_us: process::unix_time_us(),
        uptime_seconds: shared.uptime_seconds(),
        node_hz: Some(config.hz),
        threads: config.effective_threads(),
        executable: &process::executable(),
    }
    .write(out);
}

fn clients(shared: &Shared, out: &mut String) {
    let all = shared.clients.all();
    let max_query = all
        .iter()
        .map(|c| c.query_buffer.load(Relaxed))
        .max()
        .unwrap_or(0);
    let max_output = all
        .iter()
        .map(|c| c.output_buffer.load(Relaxed))
        .max()
        .unwrap_or(0);
    out.push_str("# Clients\r\n");
    line!(out, "connected_clients:{}", shared.clients.count());
    line!(out, "cluster_connections:0");
    line!(out, "maxclients:{}", shared.live.maxclients());
    line!(out, "client_recent_max_input_buffer:{max_query}");
    line!(out, "client_recent_max_output_buffer:{max_output}");
    line!(out, "blocked_clients:0");
    line!(out, "tracking_clients:0");
    line!(out, "clients_in_timeout_table:0");
}

fn memory(shared: &Shared, out: &mut String) {
    let stats = shared.store.stats();
    let used = stats.used_memory as u64;
    let rss = process::rss_bytes();
    let peak = shared.note_memory_peak(used);
    let maxmemory = shared.store.maxmemory() as u64;
    let system = process::total_system_memory();
    let overhead = stats.index_bytes as u64;
    out.push_str("# Memory\r\n");
    line!(out, "used_memory:{used}");
    line!(out, "used_memory_human:{}", human_bytes(used));
    line!(out, "used_memory_rss:{rss}");
    line!(out, "used_memory_rss_human:{}", human_bytes(rss));
    line!(out, "used_memory_peak:{peak}");
    line!(out, "used_memory_peak_human:{}", human_bytes(peak));
    line!(
        out,
        "used_memory_peak_perc:{:.2}%",
        if peak == 0 {
            100.0
        } else {
            used as f64 * 100.0 / peak as f64
        }
    );
    line!(out, "used_memory_overhead:{overhead}");
    line!(
        out,
        "used_memory_dataset:{}",
        used.saturating_sub(overhead.min(used))
    );
    // The C allocator's own numbers (Redis's names), then the store's arenas (Shoal's).
    if let Some(heap) = process::heap_stats() {
        line!(out, "allocator_allocated:{}", heap.allocated);
        line!(out, "allocator_free:{}", heap.free);
    }
    line!(out, "shoal_arena_reserved:{}", stats.arena_bytes);
    line!(out, "shoal_arena_used:{}", stats.arena_live_bytes);
    line!(out, "shoal_arena_free:{}", stats.arena_free_bytes);
    line!(out, "total_system_memory:{system}");
    line!(out, "total_system_memory_human:{}", human_bytes(system));
    line!(out, "maxmemory:{maxmemory}");
    line!(out, "maxmemory_human:{}", human_bytes(maxmemory));
    line!(out, "maxmemory_policy:{}", shared.store.policy().name());
    line!(
        out,
        "mem_fragmentation_ratio:{:.2}",
        if used == 0 {
            1.0
        } else {
            rss as f64 / used as f64
        }
    );
    line!(out, "mem_fragmentation_bytes:{}", rss as i64 - used as i64);
    line!(out, "mem_allocator:libc");
}

fn persistence(shared: &Shared, out: &mut String) {
    out.push_str("# Persistence\r\n");
    line!(out, "loading:0");
    line!(out, "async_loading:0");
    line!(out, "rdb_changes_since_last_save:0");
    line!(out, "rdb_bgsave_in_progress:0");
    line!(out, "rdb_last_save_time:{}", shared.started_unix);
    line!(out, "rdb_last_bgsave_status:ok");
    line!(out, "aof_enabled:0");
    line!(out, "aof_rewrite_in_progress:0");
}

fn stats(shared: &Shared, out: &mut String) {
    let s = &shared.stats;
    let store = shared.store.stats();
    let (net_in, net_out) = s.net_bytes();
    let (ops, kbps_in, kbps_out) = s.instantaneous();
    let errors: u64 = s.errors().values().sum();
    out.push_str("# Stats\r\n");
    line!(
        out,
        "total_connections_received:{}",
        s.connections_received.load(Relaxed)
    );
    line!(out, "total_commands_processed:{}", s.total_commands());
    line!(out, "instantaneous_ops_per_sec:{}", ops.round() as u64);
    line!(out, "total_net_input_bytes:{net_in}");
    line!(out, "total_net_output_bytes:{net_out}");
    line!(out, "instantaneous_input_kbps:{kbps_in:.2}");
    line!(out, "instantaneous_output_kbps:{kbps_out:.2}");
    line!(
        out,
        "rejected_connections:{}",
        s.rejected_connections.load(Relaxed)
    );
    let repl = &shared.replication.stats;
    line!(out, "sync_full:{}", repl.sync_full.load(Relaxed));
    line!(
        out,
        "sync_partial_ok:{}",
        repl.sync_partial_ok.load(Relaxed)
    );
    line!(
        out,
        "sync_partial_err:{}",
        repl.sync_partial_err.load(Relaxed)
    );
    line!(out, "expired_keys:{}", store.expired);
    line!(out, "evicted_keys:{}", store.evicted);
    line!(out, "keyspace_hits:{}", store.hits);
    line!(out, "keyspace_misses:{}", store.misses);
    line!(out, "pubsub_channels:0");
    line!(out, "pubsub_patterns:0");
    line!(out, "total_error_replies:{errors}");
    line!(out, "unknown_commands:{}", s.unknown_commands.load(Relaxed));
    line!(out, "command_panics:{}", s.command_panics.load(Relaxed));
    line!(
        out,
        "client_query_buffer_limit_disconnections:{}",
        s.query_buffer_disconnections.load(Relaxed)
    );
    line!(
        out,
        "client_output_buffer_limit_disconnections:{}",
        s.output_buffer_disconnections.load(Relaxed)
    );
}

fn replication(shared: &Shared, out: &mut String) {
    use crate::replication::{NO_REPLID, Role};
    let r = &shared.replication;
    out.push_str("# Replication\r\n");
    let role = r.role();
    if let Role::Replica(primary) = &role {
        let (host, port) = primary.rsplit_once(':').unwrap_or((primary.as_str(), "0"));
        let link = &r.link;
        let up = link.up.load(Relaxed);
        let last_io = r.now_ms().saturating_sub(link.last_io_ms.load(Relaxed)) / 1000;
        line!(out, "role:slave");
        line!(out, "master_host:{host}");
        line!(out, "master_port:{port}");
        line!(out, "master_link_status:{}", if up { "up" } else { "down" });
        line!(
            out,
            "master_last_io_seconds_ago:{}",
            if up { last_io as i64 } else { -1 }
        );
        line!(
            out,
            "master_sync_in_progress:{}",
            u8::from(link.loading.load(Relaxed))
        );
        line!(out, "slave_read_repl_offset:{}", r.offset());
        line!(out, "slave_repl_offset:{}", r.offset());
        if !up {
            line!(out, "master_link_down_since_seconds:{last_io}");
        }
        line!(out, "slave_priority:100");
        line!(out, "slave_read_only:1");
        line!(out, "replica_announced:1");
        line!(out, "shoal_full_syncs:{}", link.full_syncs.load(Relaxed));
        line!(
            out,
            "shoal_partial_syncs:{}",
            link.partial_syncs.load(Relaxed)
        );
    } else {
        line!(out, "role:master");
    }
    let now = r.now_ms();
    let replicas = r.replicas.lock();
    line!(out, "connected_slaves:{}", replicas.len());
    for (i, peer) in replicas.iter().enumerate() {
        let online = peer.online.load(Relaxed);
        line!(
            out,
            "slave{i}:ip={},port={},state={},offset={},lag={}",
            peer.ip,
            peer.port,
            if online { "online" } else { "wait_bgsave" },
            peer.ack.load(Relaxed),
            now.saturating_sub(peer.last_ack_ms.load(Relaxed)) / 1000
        );
    }
    drop(replicas);
    let history = r.history();
    line!(out, "master_failover_state:no-failover");
    line!(out, "master_replid:{}", history.replid);
    let (replid2, second) = match &history.replid2 {
        Some((id, end)) => (id.as_str(), (end + 1) as i64),
        None => (NO_REPLID, -1),
    };
    line!(out, "master_replid2:{replid2}");
    line!(out, "master_repl_offset:{}", history.backlog.end());
    line!(out, "second_repl_offset:{second}");
    let active = r.recording() || matches!(role, Role::Replica(_));
    line!(out, "repl_backlog_active:{}", u8::from(active));
    line!(out, "repl_backlog_size:{}", history.backlog.capacity());
    line!(
        out,
        "repl_backlog_first_byte_offset:{}",
        history.backlog.start() + 1
    );
    line!(out, "repl_backlog_histlen:{}", history.backlog.len());
}

fn cpu(out: &mut String) {
    let (user, system) = process::cpu_seconds();
    out.push_str("# CPU\r\n");
    line!(out, "used_cpu_sys:{system:.6}");
    line!(out, "used_cpu_user:{user:.6}");
    line!(out, "used_cpu_sys_children:0.000000");
    line!(out, "used_cpu_user_children:0.000000");
}

fn commandstats(shared: &Shared, out: &mut String) {
    out.push_str("# Commandstats\r\n");
    for (id, totals) in shared.stats.command_totals().iter().enumerate() {
        if totals.calls == 0 && totals.rejected == 0 && totals.failed == 0 {
            continue;
        }
        let name = shared.commands.name(id as u32).unwrap_or("unknown");
        let per_call = if totals.calls == 0 {
            0.0
        } else {
            totals.usec as f64 / totals.calls as f64
        };
        line!(
            out,
            "cmdstat_{name}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}",
            totals.calls,
            totals.usec,
            totals.rejected,
            totals.failed
        );
    }
}

/// `latency_percentiles_usec_<command>:p50=..,p99=..,p99.9=..` for every command that ran, read
/// from the latency histogram (each percentile is its bucket's upper bound).
fn latencystats(shared: &Shared, out: &mut String) {
    out.push_str("# Latencystats\r\n");
    let bound = |i: usize| -> f64 {
        match crate::stats::LATENCY_BUCKETS_US.get(i) {
            Some(&us) => us as f64,
            None => {
                (crate::stats::LATENCY_BUCKETS_US[crate::stats::LATENCY_BUCKETS_US.len() - 1] * 2)
                    as f64
            }
        }
    };
    for (id, totals) in shared.stats.command_totals().iter().enumerate() {
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
        let name = shared.commands.name(id as u32).unwrap_or("unknown");
        line!(
            out,
            "latency_percentiles_usec_{name}:p50={:.3},p99={:.3},p99.9={:.3}",
            percentile(50.0),
            percentile(99.0),
            percentile(99.9)
        );
    }
}

fn errorstats(shared: &Shared, out: &mut String) {
    out.push_str("# Errorstats\r\n");
    for (code, count) in shared.stats.errors() {
        line!(out, "errorstat_{code}:count={count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_selection_follows_redis() {
        assert_eq!(sections(&[]), DEFAULT_SECTIONS);
        assert_eq!(sections(&[b"MEMORY"]), ["memory"]);
        assert_eq!(sections(&[b"keyspace", b"server"]), ["server", "keyspace"]);
        assert!(sections(&[b"all"]).contains(&"commandstats"));
        assert_eq!(sections(&[b"all"]), ALL_SECTIONS);
        assert_eq!(
            sections(&[b"keyspace", b"cluster", b"modules"]),
            ["modules", "cluster", "keyspace"]
        );
        assert!(!sections(&[b"default"]).contains(&"commandstats"));
        assert!(sections(&[b"nonsense"]).is_empty());
    }

    #[test]
    fn human_sizes_use_two_decimals() {
        assert_eq!(human_bytes(100), "100B");
        assert_eq!(human_bytes(1536), "1.50K");
        assert_eq!(human_bytes(100 * 1024 * 1024), "100.00M");
    }
}
