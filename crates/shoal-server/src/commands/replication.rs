//! Replication commands: `PSYNC` and `REPLCONF` (a replica's side of the link), `WAIT`.

use std::time::Duration;

use shoal_proto::Argv;

use super::CommandResult;
use super::Ctx;
use super::{Waiting, int_arg, is};
use crate::replication::Role;
use crate::replication::primary::PsyncRequest;
use shoal_frontdoor::CommandError;

/// `PSYNC replid offset`: the connection becomes the stream to a replica.
pub fn psync(_ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> Result<Option<Waiting>, CommandError> {
    let offset = int_arg(argv.get(2))?;
    let replid = String::from_utf8_lossy(argv.get(1)).into_owned();
    Ok(Some(Waiting::Replicate(PsyncRequest { replid, offset })))
}

/// `REPLCONF option value [option value ...]`: what a replica tells its primary before
/// `PSYNC` (`listening-port`, `capa`, `ip-address`); `ACK` and `GETACK` belong to the stream
/// and get no reply here, as in Redis.
pub fn replconf(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if argv.len() == 2 && is(argv.get(1), "failover-offset") {
        let offset = ctx.shared.replication.offset() as i64;
        ctx.reply().int(offset);
        return Ok(());
    }
    if argv.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    let mut i = 1;
    while i + 1 < argv.len() {
        let (option, value) = (argv.get(i), argv.get(i + 1));
        if is(option, "listening-port") {
            let port = int_arg(value)?;
            ctx.client.replica_port =
                Some(u16::try_from(port).map_err(|_| CommandError::NotInteger)?);
        } else if is(option, "ip-address") {
            ctx.client.replica_ip = Some(String::from_utf8_lossy(value).into_owned());
        } else if is(option, "ack") || is(option, "getack") {
            return Ok(());
        } else if is(option, "failover-pause") {
            // Shoal's own: a replica about to take over asks its primary to stop taking
            // writes for at most this many ms, and for the offset it must reach.
            let ms = int_arg(value)?.max(0) as u64;
            if !ctx.shared.replication.is_primary() {
                return Err(CommandError::fixed("ERR this node is not a primary"));
            }
            let offset = ctx
                .shared
                .replication
                .pause_writes(Duration::from_millis(ms));
            ctx.reply().int(offset as i64);
            return Ok(());
        } else if is(option, "shoal-import") {
            // Shoal's own: the primary of a shard that slots migrate to asks for them.
            let asked = std::str::from_utf8(value)
                .ok()
                .and_then(crate::migration::source::ImportRequest::parse)
                .ok_or(CommandError::Syntax)?;
            ctx.client.import = Some(asked);
        } else if !(is(option, "capa") || is(option, "rdb-only")) {
            return Err(CommandError::Raw(
                format!(
                    "ERR Unrecognized REPLCONF option: {}",
                    String::from_utf8_lossy(option)
                )
                .into_bytes(),
            ));
        }
        i += 2;
    }
    ctx.reply().ok();
    Ok(())
}

/// `WAIT numreplicas timeout`: blocks until `numreplicas` replicas acknowledged this client's
/// last write or `timeout` ms pass (0: forever), and answers how many did.
pub fn wait(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> Result<Option<Waiting>, CommandError> {
    if matches!(ctx.shared.replication.role(), Role::Replica(_)) {
        return Err(CommandError::fixed(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
        ));
    }
    let replicas = int_arg(argv.get(1))?;
    let timeout = int_arg(argv.get(2))?;
    if timeout < 0 {
        return Err(CommandError::fixed("ERR timeout is negative"));
    }
    let replicas = replicas.max(0) as usize;
    let timeout = (timeout > 0).then(|| Duration::from_millis(timeout as u64));
    let acked = ctx
        .shared
        .replication
        .acked_at_least(ctx.client.write_offset);
    if acked >= replicas {
        ctx.reply().int(acked as i64);
        return Ok(None);
    }
    Ok(Some(Waiting::Acks { replicas, timeout }))
}
