//! `LATENCY LATEST|HISTORY|RESET|GRAPH|DOCTOR|HISTOGRAM`: the front door's latency monitor
//! ([`shoal_frontdoor::latency`]) and command histograms, in Redis 7's replies.

use shoal_frontdoor::CommandError;
use shoal_proto::Argv;

use super::{CommandResult, Ctx};

/// `LATENCY LATEST`: `[event, time, latest ms, max ms]` per event.
pub fn latest(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let events = ctx.shared.door.latency.latest();
    let mut reply = ctx.reply();
    reply.array(events.len());
    for event in events {
        reply.array(4);
        reply.bulk(event.event.as_bytes());
        reply.int(event.latest.time as i64);
        reply.int(event.latest.ms as i64);
        reply.int(event.max as i64);
    }
    Ok(())
}

/// `LATENCY HISTORY event`: `[time, ms]` per sample, oldest first.
pub fn history(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let samples = ctx.shared.door.latency.history(argv.get(2));
    let mut reply = ctx.reply();
    reply.array(samples.len());
    for sample in samples {
        reply.array(2);
        reply.int(sample.time as i64);
        reply.int(sample.ms as i64);
    }
    Ok(())
}

/// `LATENCY RESET [event ...]`: how many events were forgotten.
pub fn reset(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let names: Vec<&[u8]> = argv.iter().skip(2).collect();
    let reset = ctx.shared.door.latency.reset(&names);
    ctx.reply().int(reset as i64);
    Ok(())
}

/// `LATENCY GRAPH event`: the ASCII graph, as verbatim text.
pub fn graph(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let event = argv.get(2);
    match ctx.shared.door.latency.graph(event) {
        Some(graph) => {
            ctx.reply().verbatim(graph.as_bytes());
            Ok(())
        }
        None => Err(CommandError::Other(
            format!(
                "ERR No samples available for event '{}'",
                String::from_utf8_lossy(event)
            )
            .into(),
        )),
    }
}

/// `LATENCY DOCTOR`: the report, as verbatim text.
pub fn doctor(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let door = &ctx.shared.door;
    let report = door
        .latency
        .doctor(door.slowlog.slower_than_us(), ctx.shared.live.hz());
    ctx.reply().verbatim(report.as_bytes());
    Ok(())
}

/// `LATENCY HISTOGRAM [command ...]`.
pub fn histogram(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let names: Vec<&[u8]> = argv.iter().skip(2).collect();
    let door = ctx.shared.door.clone();
    shoal_frontdoor::latency::write_histogram(&door, &names, &mut ctx.reply());
    Ok(())
}
