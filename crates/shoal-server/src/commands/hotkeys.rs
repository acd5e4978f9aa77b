//! Redis 8.6's `HOTKEYS START/STOP/GET/RESET` on this node, over the front door's sampled
//! summaries ([`shoal_frontdoor::hotkeys`]). Errors and reply fields follow Redis's
//! `src/hotkeys.c` (8.6, after redis/redis#14761: `GET` answers an array of one map, and
//! `selected-slots` lists this node's slot ranges when none were selected). Not done here:
//! `SLOTS` in cluster mode (refused with an error of Shoal's), and the `*-selected-slots`
//! fields that only it produces.

use shoal_frontdoor::CommandError;
use shoal_frontdoor::hotkeys::{DEFAULT_COUNT, HotKeysError, Metrics, StartOptions};
use shoal_proto::Argv;

use super::{CommandResult, Ctx};

fn err(line: &'static str) -> CommandError {
    CommandError::fixed(line)
}

/// Redis's `getRangeLongFromObjectOrReply` with a message: `msg` for a non-number as well as
/// for one out of range.
fn ranged(arg: &[u8], min: i64, max: i64, msg: &'static str) -> Result<i64, CommandError> {
    match shoal_store::parse_i64(arg) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(err(msg)),
    }
}

fn hotkeys_error(e: HotKeysError) -> CommandError {
    CommandError::Other(format!("ERR {e}").into())
}

/// `HOTKEYS START METRICS count [CPU] [NET] [COUNT k] [DURATION seconds] [SAMPLE ratio]
/// [SLOTS count slot ...]`
pub fn start(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let stats = &ctx.shared.door.stats;
    let options = parse_start(argv, ctx.shared.cluster.is_some())?;
    // Redis checks for a running session before the arguments; the order only matters for
    // a wrong START during a session, which is refused either way.
    stats.hotkeys.start(stats, options).map_err(hotkeys_error)?;
    ctx.reply().ok();
    Ok(())
}

fn parse_start(argv: &Argv<'_>, cluster: bool) -> Result<StartOptions, CommandError> {
    let argc = argv.len();
    if argc < 4 || !argv.get(2).eq_ignore_ascii_case(b"METRICS") {
        return Err(err("ERR METRICS parameter is required"));
    }
    let metrics_count = ranged(argv.get(3), 1, 2, "ERR METRICS count must be > 0 and <= 2")?;
    let mut metrics = Metrics::default();
    let mut j = 4;
    let mut parsed = 0;
    let mut valid = 0;
    while j < argc && parsed < metrics_count {
        let a = argv.get(j);
        if a.eq_ignore_ascii_case(b"CPU") {
            if metrics.cpu {
                return Err(err("ERR METRICS CPU defined more than once!"));
            }
            metrics.cpu = true;
            valid += 1;
        } else if a.eq_ignore_ascii_case(b"NET") {
            if metrics.net {
                return Err(err("ERR METRICS NET defined more than once!"));
            }
            metrics.net = true;
            valid += 1;
        }
        // Anything else counts as a metric of a later version (Redis's forward compatibility).
        parsed += 1;
        j += 1;
    }
    if parsed != metrics_count {
        return Err(err(
            "ERR METRICS count does not match number of metric types provided",
        ));
    }
    if valid == 0 {
        return Err(err(
            "ERR METRICS no valid metrics passed. Supported: CPU|NET",
        ));
    }
    let mut options = StartOptions {
        metrics,
        count: DEFAULT_COUNT,
        duration_ms: None,
        sample_ratio: 1,
    };
    while j < argc {
        let more = j + 1 < argc;
        let a = argv.get(j);
        if more && a.eq_ignore_ascii_case(b"COUNT") {
            options.count =
                ranged(argv.get(j + 1), 1, 64, "ERR COUNT must be between 1 and 64")? as usize;
            j += 2;
        } else if more && a.eq_ignore_ascii_case(b"DURATION") {
            let s = ranged(
                argv.get(j + 1),
                1,
                1_000_000,
                "ERR DURATION must be between 1 and 1000000",
            )?;
            options.duration_ms = Some(s as u64 * 1000);
            j += 2;
        } else if more && a.eq_ignore_ascii_case(b"SAMPLE") {
            options.sample_ratio = ranged(
                argv.get(j + 1),
                1,
                i64::from(i32::MAX),
                "ERR SAMPLE ratio must be positive",
            )? as u32;
            j += 2;
        } else if more && a.eq_ignore_ascii_case(b"SLOTS") {
            if !cluster {
                return Err(err(
                    "ERR SLOTS parameter cannot be used in non-cluster mode",
                ));
            }
            // Not confirmed against Redis, and not done yet: Shoal's own refusal.
            return Err(err("ERR SLOTS is not supported by Shoal yet"));
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(options)
}

/// `HOTKEYS STOP`: `OK`, or a null if no session runs (as Redis's `hotkeys.c`).
pub fn stop(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let stats = &ctx.shared.door.stats;
    if stats.hotkeys.stop(stats) {
        ctx.reply().ok();
    } else {
        ctx.reply().null();
    }
    Ok(())
}

/// `HOTKEYS RESET`
pub fn reset(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let stats = &ctx.shared.door.stats;
    stats.hotkeys.reset(stats).map_err(hotkeys_error)?;
    ctx.reply().ok();
    Ok(())
}

/// `HOTKEYS GET`: a null without a session; else an array of one map, whose fields come in
/// Redis's order.
pub fn get(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let stats = &ctx.shared.door.stats;
    let Some(report) = stats.hotkeys.report(stats) else {
        ctx.reply().null();
        return Ok(());
    };
    let slots = local_slot_ranges(ctx);
    let fields = 7
        + usize::from(report.cpu_time_ms.is_some()) * 2
        + usize::from(report.total_net_bytes.is_some())
        + usize::from(report.by_cpu_time_us.is_some())
        + usize::from(report.by_net_bytes.is_some());
    let mut reply = ctx.reply();
    reply.array(1);
    reply.map(fields);
    reply.bulk(b"tracking-active");
    reply.int(i64::from(report.active));
    reply.bulk(b"sample-ratio");
    reply.int(i64::from(report.sample_ratio));
    reply.bulk(b"selected-slots");
    reply.array(slots.len());
    for (first, last) in slots {
        if first == last {
            reply.array(1);
            reply.int(i64::from(first));
        } else {
            reply.array(2);
            reply.int(i64::from(first));
            reply.int(i64::from(last));
        }
    }
    let int = |n: u64| n.min(i64::MAX as u64) as i64;
    reply.bulk(b"all-commands-all-slots-us");
    reply.int(int(report.all_commands_us));
    reply.bulk(b"net-bytes-all-commands-all-slots");
    reply.int(int(report.all_commands_net_bytes));
    reply.bulk(b"collection-start-time-unix-ms");
    reply.int(int(report.start_unix_ms));
    reply.bulk(b"collection-duration-ms");
    reply.int(int(report.duration_ms));
    if let Some((user, sys)) = report.cpu_time_ms {
        reply.bulk(b"total-cpu-time-user-ms");
        reply.int(int(user));
        reply.bulk(b"total-cpu-time-sys-ms");
        reply.int(int(sys));
    }
    if let Some(total) = report.total_net_bytes {
        reply.bulk(b"total-net-bytes");
        reply.int(int(total));
    }
    for (name, list) in [
        (&b"by-cpu-time-us"[..], &report.by_cpu_time_us),
        (b"by-net-bytes", &report.by_net_bytes),
    ] {
        if let Some(list) = list {
            reply.bulk(name);
            reply.array(list.len() * 2);
            for (key, value) in list {
                reply.bulk(key);
                reply.int(int(*value));
            }
        }
    }
    Ok(())
}

/// This node's slots as ranges: every slot standalone, those it serves as a primary in a
/// cluster.
fn local_slot_ranges(ctx: &Ctx<'_>) -> Vec<(u16, u16)> {
    let slots = shoal_cluster::SLOTS as u16;
    let Some(cluster) = ctx.shared.cluster.as_ref() else {
        return vec![(0, slots - 1)];
    };
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for slot in 0..slots {
        if !cluster.serves_here(shoal_cluster::Slot::from(slot), false) {
            continue;
        }
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == slot => *last = slot,
            _ => ranges.push((slot, slot)),
        }
    }
    ranges
}
