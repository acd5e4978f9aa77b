//! `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`: the longest common
//! subsequence of two strings ([`table`] computes it), with Redis 7.0's options, replies,
//! errors and its bound on the table's memory (`proto-max-bulk-len`).

mod table;

use shoal_frontdoor::CommandError;
use shoal_proto::Argv;
use shoal_store::Kind;

use super::{CommandResult, Ctx, int_arg, is_named};
use table::Table;

/// What to reply.
#[derive(Default)]
struct Options {
    len: bool,
    idx: bool,
    with_match_len: bool,
    min_match_len: u64,
}

/// Reads the options from argument 3 on.
fn parse(argv: &Argv<'_>) -> Result<Options, CommandError> {
    let mut o = Options::default();
    let mut j = 3;
    while j < argv.len() {
        let opt = argv.get(j);
        if is_named(opt, "idx") {
            o.idx = true;
        } else if is_named(opt, "len") {
            o.len = true;
        } else if is_named(opt, "withmatchlen") {
            o.with_match_len = true;
        } else if is_named(opt, "minmatchlen") && j + 1 < argv.len() {
            o.min_match_len = int_arg(argv.get(j + 1))?.max(0) as u64;
            j += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    if o.len && o.idx {
        return Err(CommandError::fixed(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    Ok(o)
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`
pub fn lcs(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    // Redis reads both keys (a missing one as empty) before it reads the options.
    let mut values: [Option<Vec<u8>>; 2] = [None, None];
    let keys = [argv.get(1), argv.get(2)];
    ctx.shared
        .store
        .get_many(keys.into_iter(), |i, v| values[i] = v.map(<[u8]>::to_vec));
    // A key that read as nothing may hold another type.
    let of_another_type = |key: &&[u8]| {
        ctx.shared
            .store
            .kind_of(key)
            .is_some_and(|k| k != Kind::String)
    };
    if keys
        .iter()
        .zip(&values)
        .any(|(key, value)| value.is_none() && of_another_type(key))
    {
        return Err(CommandError::fixed(
            "ERR The specified keys must contain string values",
        ));
    }
    for (key, value) in keys.iter().zip(&values) {
        if value.is_none() {
            ctx.key_miss(key);
        }
    }
    let options = parse(argv)?;
    let [a, b] = values.map(Option::unwrap_or_default);
    if a.len() >= u32::MAX as usize - 1 || b.len() >= u32::MAX as usize - 1 {
        return Err(CommandError::fixed("ERR String too long for LCS"));
    }
    let failed =
        CommandError::fixed("ERR Insufficient memory, failed allocating transient memory for LCS");
    let max = ctx.shared.door.settings.max_bulk_len() as u64;
    match Table::bytes(a.len(), b.len()) {
        Some(bytes) if bytes > max => {
            return Err(CommandError::fixed(
                "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
            ));
        }
        Some(_) => {}
        None => return Err(failed),
    }
    let table = Table::build(&a, &b).ok_or(failed)?;
    if options.len {
        ctx.reply().int(i64::from(table.len()));
        return Ok(());
    }
    let min_len = options.min_match_len;
    let (lcs, matches) = table.walk(min_len);
    let mut reply = ctx.reply();
    if !options.idx {
        reply.bulk(&lcs);
        return Ok(());
    }
    reply.map(2);
    reply.bulk(b"matches");
    reply.array(matches.len());
    for m in &matches {
        reply.array(2 + usize::from(options.with_match_len));
        for (start, end) in [m.a, m.b] {
            reply.array(2);
            reply.int(i64::from(start));
            reply.int(i64::from(end));
        }
        if options.with_match_len {
            reply.int(i64::from(m.len()));
        }
    }
    reply.bulk(b"len");
    reply.int(i64::from(table.len()));
    Ok(())
}
