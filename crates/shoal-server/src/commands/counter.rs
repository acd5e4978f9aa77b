//! Shoal's sharded counters on a standalone node: `COUNTER.INCRBY key parts increment`,
//! `COUNTER.GET key parts`, `COUNTER.DEL key parts`, served here for real, on the parts
//! `key#1` .. `key#N` ([`shoal_client::counter`] reads the arguments, names the parts and sums
//! them, as the proxy does), so that an application behaves the same against one node and the
//! proxy. A cluster node never comes here: it serves them through its forwarder or refuses
//! them (see `crate::cluster::counters`).
//!
//! * `COUNTER.INCRBY`: `INCRBY` of one part picked at random (its errors, its `incrby` event);
//!   replies that part's new value.
//! * `COUNTER.GET`: the parts read at once, as `MGET` reads them (a part of another type
//!   counts as missing), summed, a missing part counting 0; with `CLIENT TRACKING` on, the
//!   parts are what is remembered for the reply.
//! * `COUNTER.DEL`: the parts deleted at once, as `DEL` does; replies how many existed.

use shoal_client::counter::{
    CounterCommand, CounterOp, add_part, part_key, part_keys, random_part,
};
use shoal_frontdoor::CommandError;
use shoal_proto::Argv;

use super::{CommandResult, Ctx, keys, strings};

/// `COUNTER.INCRBY`, `COUNTER.GET` and `COUNTER.DEL`.
pub fn counter(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let args: Vec<&[u8]> = argv.iter().collect();
    let command = CounterCommand::parse(&args).map_err(|e| CommandError::Other(e.line().into()))?;
    let key = &command.key[..];
    let reply = match command.op {
        CounterOp::IncrBy(by) => {
            strings::increment(ctx, &part_key(key, random_part(command.parts)), by)?
        }
        CounterOp::Get => sum_parts(ctx, key, command.parts)?,
        CounterOp::Del => {
            let parts = part_keys(key, command.parts);
            keys::remove(ctx, parts.iter().map(|p| &p[..])) as i64
        }
    };
    ctx.reply().int(reply);
    Ok(())
}

/// The sum of the counter `key`'s `parts` parts, read at once.
fn sum_parts(ctx: &mut Ctx<'_>, key: &[u8], parts: usize) -> Result<i64, CommandError> {
    let parts = part_keys(key, parts);
    let keys = parts.iter().map(|p| &p[..]);
    if ctx.conn.tracking() {
        let limit = ctx.shared.door.settings.pubsub_output_limit();
        ctx.conn.remember_reads(keys.clone(), limit);
    }
    let mut total = Ok(0);
    ctx.shared.store.get_many(keys, |i, value| {
        if let (Ok(sum), Some(value)) = (total, value) {
            total = add_part(sum, i + 1, value);
        }
    });
    total.map_err(|e| CommandError::Other(e.line().into()))
}
