//! `WATCH` and `UNWATCH`. (`MULTI`, `EXEC` and `DISCARD` are the front door's, which keeps the
//! queue; the node runs it, see `crate::transaction`.)

use shoal_frontdoor::CommandError;
use shoal_proto::Argv;

use super::{CommandResult, Ctx};

/// `WATCH key [key ...]`: the connection's next `EXEC` runs nothing if one of these keys
/// changes first.
pub fn watch(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if ctx.conn.in_multi() {
        return Err(CommandError::fixed("ERR WATCH inside MULTI is not allowed"));
    }
    for key in argv.iter().skip(1) {
        // A key whose time ran out is reclaimed first: its expiry is not a change after
        // the watch began.
        ctx.shared.store.count_existing(std::iter::once(key));
        ctx.shared.watches.watch(&mut ctx.client.watching, key);
    }
    ctx.reply().ok();
    Ok(())
}

/// `UNWATCH`: forgets every watched key.
pub fn unwatch(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    ctx.client.watching = None;
    ctx.reply().ok();
    Ok(())
}
