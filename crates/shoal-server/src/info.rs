//! The `INFO` text, with Redis 7's section and field names, read from the same counters as
//! `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use shoal_frontdoor::Backend as _;
use shoal_frontdoor::info::{self, human_bytes};

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
pub(crate) fn sections(args: &[&[u8]]) -> Vec<&'static str> {
    info::select_sections(args, ALL_SECTIONS, DEFAULT_SECTIONS)
}

/// Renders the given sections.
pub(crate) fn render(shared: &Shared, sections: &[&str]) -> String {
    info::render(sections, |section, out| match section {
        "server" => server(shared, out),
        "clients" => info::clients(&shared.door, out),
        "memory" => memory(shared, out),
        "persistence" => persistence(shared, out),
        "stats" => stats(shared, out),
        "replication" => replication(shared, out),
        "cpu" => cpu(out),
        // No modules: Redis prints the bare header.
        "modules" => out.push_str("# Modules\r\n"),
        "commandstats" => info::commandstats(&shared.door, out),
        "errorstats" => info::errorstats(&shared.door, out),
        "latencystats" => info::latencystats(&shared.door, out),
        "cluster" => cluster(shared, out),
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

/// `# Cluster`: Redis's `cluster_enabled`, then on a cluster node what it can tell of the
/// cluster's health (the same account as `CLUSTER INFO` and `/health`).
fn cluster(shared: &Shared, out: &mut String) {
    let enabled = u8::from(shared.cluster.is_some());
    out.push_str(&format!("# Cluster\r\ncluster_enabled:{enabled}\r\n"));
    if let Some(cluster) = &shared.cluster {
        let health = cluster.health();
        line!(out, "shoal_cluster_state:{}", health.state());
        line!(
            out,
            "shoal_controller_quorum:{}",
            u8::from(health.controller_quorum)
        );
        line!(out, "shoal_controller_leader:{}", u8::from(health.leads));
        let term = cluster
            .node()
            .and_then(|n| n.controller())
            .map_or(0, |c| c.term());
        line!(out, "shoal_controller_term:{term}");
        line!(out, "shoal_lease:{}", health.lease.as_str());
        line!(
            out,
            "shoal_silent_primaries:{}",
            health.silent_primaries.len()
        );
        line!(
            out,
            "shoal_bus_auth_failures:{}",
            cluster.node().map_or(0, |n| n.bus_auth_failures())
        );
        line!(
            out,
            "shoal_publications_dropped:{}",
            cluster.node().map_or(0, |n| n.publications_dropped())
        );
        let map = cluster.map();
        let moving: usize = map.migrations.iter().map(|m| m.count()).sum();
        line!(out, "shoal_slots_migrating:{moving}");
        let stats = &cluster.migration_stats;
        let phases = &stats.phase_max_us;
        for (name, value) in [
            ("keys_sent", stats.keys_sent.load(Relaxed)),
            ("keys_received", stats.keys_received.load(Relaxed)),
            ("hand_overs", stats.hand_overs.load(Relaxed)),
            ("slots_handed_over", stats.slots_handed_over.load(Relaxed)),
            ("pause_p99_us", stats.pause_quantile_us(0.99)),
            ("pause_max_us", stats.pause_max_us.load(Relaxed)),
            ("pause_drain_max_us", phases.drain_us.load(Relaxed)),
            ("pause_catch_up_max_us", phases.catch_up_us.load(Relaxed)),
            ("pause_commit_max_us", phases.commit_us.load(Relaxed)),
        ] {
            line!(out, "shoal_migration_{name}:{value}");
        }
    }
}

fn server(shared: &Shared, out: &mut String) {
    let config = shared.config.read();
    info::Server {
        shoal_version: env!("CARGO_PKG_VERSION"),
        shoal_role: None,
        mode: shared.mode(),
        os: &process::os_description(),
        run_id: shared.door.run_id(),
        tcp_port: shared.resp_addr.read().map_or(config.port, |a| a.port()),
        now_us: process::unix_time_us(),
        uptime_seconds: shared.door.uptime_seconds(),
        node_hz: Some(config.hz),
        threads: config.effective_threads(),
        executable: &process::executable(),
    }
    .write(out);
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
    line!(out, "rdb_last_save_time:{}", shared.door.started_unix());
    line!(out, "rdb_last_bgsave_status:ok");
    line!(out, "aof_enabled:0");
    line!(out, "aof_rewrite_in_progress:0");
}

fn stats(shared: &Shared, out: &mut String) {
    info::stats(&shared.door, out, |out| {
        let store = shared.store.stats();
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
    });
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
}
