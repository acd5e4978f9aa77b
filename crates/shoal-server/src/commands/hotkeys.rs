//! Redis 8.6's `HOTKEYS START/STOP/GET/RESET` on this node, over the front door's sampled
//! summaries ([`shoal_frontdoor::hotkeys`]). Errors and reply fields follow Redis's
//! `src/hotkeys.c` (8.6, after redis/redis#14761: `GET` answers an array of one map, and
//! `selected-slots` lists this node's slot ranges when none were selected).
//!
//! `SLOTS count slot ...` (cluster mode only) restricts the session to keys of those slots,
//! checked as Redis's `hotkeys.c` checks them, in its order: `SLOTS` twice, the count (1 to
//! 16384), enough slots after it, then each slot in turn (a number from 0 to 16383, served by
//! this node as a primary: Redis's `clusterNodeCoversSlot` of `myself`), and duplicates only
//! once all are read (Redis sorts them first). `GET` then lists the selected slots as sorted
//! ranges (a lone slot as a one-element array) and adds Redis's conditional fields:
//! `sampled-commands-selected-slots-us` and `net-bytes-sampled-commands-selected-slots` only
//! with `SAMPLE` above 1, `all-commands-selected-slots-us` and
//! `net-bytes-all-commands-selected-slots` always, each before its `all-slots` sibling.
//!
//! Not confirmed: the field name `sampled-commands-selected-slots-us` is the one of
//! `hotkeys.c` after redis/redis#14780 (and of Redis's documentation); that change renamed
//! `sampled-command-selected-slots-us`, and a third-party client's comment says Redis 8.6.0
//! still sent the singular name. Which 8.6 patch release first sent the plural was not
//! checked against a release. Also unlike Redis, the `*-selected-slots` counts take a
//! command's slot from its first key (Redis uses the slot its cluster routing computed,
//! the same for a command a cluster accepts), and `all-commands-all-slots-us` and
//! `net-bytes-all-commands-all-slots` stay the node's totals, keyless commands included.

use std::sync::Arc;

use shoal_frontdoor::CommandError;
use shoal_frontdoor::hotkeys::{
    DEFAULT_COUNT, HotKeysError, Metrics, SelectedSlots, SlotsError, StartOptions,
};
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
    let serves = |slot: u16| {
        ctx.shared
            .cluster
            .as_ref()
            .is_some_and(|c| c.serves_here(shoal_cluster::Slot::from(slot), false))
    };
    let cluster = ctx
        .shared
        .cluster
        .is_some()
        .then_some(&serves as &dyn Fn(u16) -> bool);
    let options = parse_start(argv, cluster)?;
    // Redis checks for a running session before the arguments; the order only matters for
    // a wrong START during a session, which is refused either way.
    stats.hotkeys.start(stats, options).map_err(hotkeys_error)?;
    ctx.reply().ok();
    Ok(())
}

/// `HOTKEYS START`'s arguments; `cluster`: in cluster mode, whether this node serves a slot.
fn parse_start(
    argv: &Argv<'_>,
    cluster: Option<&dyn Fn(u16) -> bool>,
) -> Result<StartOptions, CommandError> {
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
        slots: None,
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
            let Some(serves) = cluster else {
                return Err(err(
                    "ERR SLOTS parameter cannot be used in non-cluster mode",
                ));
            };
            if options.slots.is_some() {
                return Err(err("ERR SLOTS parameter already specified"));
            }
            let (slots, next) = parse_slots(argv, j, serves)?;
            options.slots = Some(Arc::new(slots));
            j = next;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(options)
}

/// `SLOTS count slot ...` at `argv[j]`: the slots and where the next argument is.
fn parse_slots(
    argv: &Argv<'_>,
    j: usize,
    serves: &dyn Fn(u16) -> bool,
) -> Result<(SelectedSlots, usize), CommandError> {
    let max = shoal_cluster::SLOTS as i64;
    let count = ranged(
        argv.get(j + 1),
        1,
        max,
        "ERR SLOTS count must be between 1 and 16384",
    )? as usize;
    if j + 1 + count >= argv.len() {
        return Err(err("ERR not enough slot numbers provided"));
    }
    let mut slots = Vec::with_capacity(count);
    for i in 0..count {
        let slot = ranged(
            argv.get(j + 2 + i),
            0,
            max - 1,
            "ERR Invalid or out of range slot",
        )? as u16;
        if !serves(slot) {
            return Err(CommandError::Other(
                format!("ERR slot {slot} not handled by this node").into(),
            ));
        }
        slots.push(u32::from(slot));
    }
    let slots = SelectedSlots::new(&slots, shoal_cluster::key_slot).map_err(|e| match e {
        SlotsError::Duplicate(_) => err("ERR duplicate slot number"),
        // Checked above.
        SlotsError::Empty | SlotsError::OutOfRange(_) => err("ERR Invalid or out of range slot"),
    })?;
    Ok((slots, j + 2 + count))
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
    let slots = match &report.selected {
        Some((ranges, _)) => ranges.clone(),
        None => local_slot_ranges(ctx),
    };
    let selected = report.selected.as_ref().map(|(_, counts)| *counts);
    let sampling = report.sample_ratio > 1;
    let fields = 7
        + usize::from(selected.is_some()) * (2 + 2 * usize::from(sampling))
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
    if let Some(counts) = selected {
        if sampling {
            reply.bulk(b"sampled-commands-selected-slots-us");
            reply.int(int(counts.sampled_commands_us));
        }
        reply.bulk(b"all-commands-selected-slots-us");
        reply.int(int(counts.all_commands_us));
    }
    reply.bulk(b"all-commands-all-slots-us");
    reply.int(int(report.all_commands_us));
    if let Some(counts) = selected {
        if sampling {
            reply.bulk(b"net-bytes-sampled-commands-selected-slots");
            reply.int(int(counts.sampled_commands_net_bytes));
        }
        reply.bulk(b"net-bytes-all-commands-selected-slots");
        reply.int(int(counts.all_commands_net_bytes));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse_start` of a space-separated line; `serves`: the slots this node serves (none:
    /// not a cluster).
    fn parse(line: &str, serves: Option<std::ops::Range<u16>>) -> Result<StartOptions, String> {
        let mut src = Vec::new();
        let mut ranges = Vec::new();
        for word in line.split(' ') {
            ranges.push(src.len()..src.len() + word.len());
            src.extend_from_slice(word.as_bytes());
        }
        let argv = Argv::from_parts(&src, &ranges);
        let serves = serves.map(|r| move |slot: u16| r.contains(&slot));
        let cluster = serves.as_ref().map(|f| f as &dyn Fn(u16) -> bool);
        parse_start(&argv, cluster).map_err(|e| match e {
            CommandError::Other(line) => line.into_owned(),
            CommandError::Syntax => "ERR syntax error".into(),
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn slots_are_checked_in_redis_order() {
        let half = Some(0..8192);
        let cases = [
            ("SLOTS 1 8192", "ERR slot 8192 not handled by this node"),
            ("SLOTS 2 5 16383", "ERR slot 16383 not handled by this node"),
            // Each slot is checked in turn: range before ownership, both before duplicates.
            ("SLOTS 3 9000 1 1", "ERR slot 9000 not handled by this node"),
            ("SLOTS 3 1 1 x", "ERR Invalid or out of range slot"),
            ("SLOTS 2 1 16384", "ERR Invalid or out of range slot"),
            ("SLOTS 1 -1", "ERR Invalid or out of range slot"),
            ("SLOTS 3 1 2 1", "ERR duplicate slot number"),
            ("SLOTS 0 1", "ERR SLOTS count must be between 1 and 16384"),
            (
                "SLOTS 16385 1",
                "ERR SLOTS count must be between 1 and 16384",
            ),
            ("SLOTS x 1", "ERR SLOTS count must be between 1 and 16384"),
            ("SLOTS 2 1", "ERR not enough slot numbers provided"),
            ("SLOTS 1", "ERR not enough slot numbers provided"),
            ("SLOTS", "ERR syntax error"),
            (
                "SLOTS 1 1 SLOTS 1 2",
                "ERR SLOTS parameter already specified",
            ),
            ("SLOTS 1 1 COUNT 0", "ERR COUNT must be between 1 and 64"),
        ];
        for (tail, error) in cases {
            let line = format!("HOTKEYS START METRICS 1 CPU {tail}");
            assert_eq!(parse(&line, half.clone()), Err(error.to_string()), "{line}");
        }
        assert_eq!(
            parse("HOTKEYS START METRICS 1 CPU SLOTS 1 1", None),
            Err("ERR SLOTS parameter cannot be used in non-cluster mode".to_string())
        );
        let options = parse(
            "HOTKEYS START METRICS 1 CPU SLOTS 6 10 5 1 0 6 2 COUNT 3",
            half,
        )
        .unwrap();
        assert_eq!(options.count, 3);
        let slots = options.slots.unwrap();
        assert_eq!(slots.ranges(), &[(0, 2), (5, 6), (10, 10)]);
        assert!(slots.contains_key(b"{06S}key"), "{{06S}} hashes to slot 0");
    }
}
