//! `COMMAND` and its subcommands, answered from Redis's recorded command table.

use shoal_proto::Argv;
use shoal_proto::command_table::{CommandSpec, StaticValue};
use shoal_store::glob_match;

use shoal_frontdoor::table;

use super::CommandResult;
use super::Ctx;
use super::is;
use shoal_frontdoor::CommandError;

/// Finds a command or subcommand by name (`get`, `config|get`), any case.
fn find(name: &[u8]) -> Option<&'static CommandSpec> {
    table().find(name).map(|c| c.spec)
}

/// `COMMAND`: every command's entry.
pub fn command(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let specs: Vec<&'static CommandSpec> = table().iter().map(|c| c.spec).collect();
    let mut reply = ctx.reply();
    reply.array(specs.len());
    for spec in specs {
        reply.static_value(spec.info);
    }
    Ok(())
}

/// `COMMAND COUNT`
pub fn command_count(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let count = table().iter().count();
    ctx.reply().int(count as i64);
    Ok(())
}

/// `COMMAND INFO [name ...]`: the named entries (null for unknown names), or all.
pub fn command_info(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if argv.len() == 2 {
        return command(ctx, argv);
    }
    let specs: Vec<Option<&'static CommandSpec>> = argv.iter().skip(2).map(|n| find(n)).collect();
    let mut reply = ctx.reply();
    reply.array(specs.len());
    for spec in specs {
        match spec {
            Some(spec) => reply.static_value(spec.info),
            // Redis answers an unknown name with a null (`$-1` in RESP2).
            None => reply.null(),
        }
    }
    Ok(())
}

/// `COMMAND DOCS [name ...]`: a map of name to documentation (unknown names left out).
pub fn command_docs(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let specs: Vec<&'static CommandSpec> = if argv.len() == 2 {
        table().iter().map(|c| c.spec).collect()
    } else {
        argv.iter().skip(2).filter_map(|n| find(n)).collect()
    };
    let mut reply = ctx.reply();
    reply.map(specs.len());
    for spec in specs {
        reply.bulk(spec.name.as_bytes());
        reply.static_value(spec.docs);
    }
    Ok(())
}

/// Whether a command's entry lists `@category` among its ACL categories.
fn in_category(spec: &CommandSpec, category: &[u8]) -> bool {
    let StaticValue::Array(fields) = spec.info else {
        return false;
    };
    let Some(StaticValue::Set(categories)) = fields.get(6) else {
        return false;
    };
    categories.iter().any(|c| match c {
        StaticValue::Simple(name) | StaticValue::Bulk(name) => name
            .strip_prefix('@')
            .is_some_and(|n| n.as_bytes().eq_ignore_ascii_case(category)),
        _ => false,
    })
}

/// `COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]`
pub fn command_list(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    enum Filter<'a> {
        All,
        Module,
        Category(&'a [u8]),
        Pattern(&'a [u8]),
    }
    let filter = match argv.len() {
        2 => Filter::All,
        5 if is(argv.get(2), "FILTERBY") => {
            let value = argv.get(4);
            if is(argv.get(3), "MODULE") {
                Filter::Module
            } else if is(argv.get(3), "ACLCAT") {
                Filter::Category(value)
            } else if is(argv.get(3), "PATTERN") {
                Filter::Pattern(value)
            } else {
                return Err(CommandError::Syntax);
            }
        }
        _ => return Err(CommandError::Syntax),
    };
    let names: Vec<&'static str> = table()
        .iter()
        .flat_map(|c| std::iter::once(c.spec).chain(c.spec.subcommands.iter()))
        .filter(|spec| match filter {
            Filter::All => true,
            Filter::Module => false,
            Filter::Category(category) => in_category(spec, category),
            Filter::Pattern(pattern) => glob_match(pattern, spec.name.as_bytes(), true),
        })
        .map(|spec| spec.name)
        .collect();
    let mut reply = ctx.reply();
    reply.array(names.len());
    for name in names {
        reply.bulk(name.as_bytes());
    }
    Ok(())
}

/// `COMMAND GETKEYS command [arg ...]`: the key arguments of a command line, checked in Redis's
/// order: the command (a container's unknown subcommand is no command), whether it takes keys
/// at all, then its arity.
pub fn command_getkeys(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let Some(top) = table().lookup(argv.get(2)).map(|c| c.spec) else {
        return Err(CommandError::fixed("ERR Invalid command specified"));
    };
    let args: Vec<&[u8]> = argv.iter().skip(2).collect();
    let spec = match args.get(1) {
        Some(sub) if !top.subcommands.is_empty() => top
            .subcommand(sub)
            .ok_or(CommandError::fixed("ERR Invalid command specified"))?,
        _ => top,
    };
    if spec.first_key <= 0 {
        return Err(CommandError::fixed("ERR The command has no key arguments"));
    }
    if !spec.arity_ok(args.len()) {
        return Err(CommandError::fixed(
            "ERR Invalid number of arguments specified for command",
        ));
    }
    let keys: Vec<&[u8]> = spec.key_positions(args.len()).map(|i| args[i]).collect();
    if keys.is_empty() {
        return Err(CommandError::fixed(
            "ERR Invalid arguments specified for command",
        ));
    }
    let mut reply = ctx.reply();
    reply.array(keys.len());
    for key in keys {
        reply.bulk(key);
    }
    Ok(())
}
