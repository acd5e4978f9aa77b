//! The `ACL` subcommands, with Redis 7.0's replies and errors: `SETUSER GETUSER DELUSER LIST
//! USERS WHOAMI CAT LOG GENPASS DRYRUN SAVE LOAD HELP`.

use std::sync::Arc;

use rand::RngCore as _;
use shoal_proto::Argv;
use shoal_proto::args::parse_i64;
use shoal_proto::command_table::acl::{CATEGORIES, acl_commands, category};

use super::{Acl, Denied, UserSlot};
use crate::backend::{Backend, Conn};
use crate::clients::Clients;
use crate::commands::table;
use crate::connection::ConnCall;
use crate::error::{CommandError, subcommand_syntax_error};

/// An `ACL` subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AclCommand {
    SetUser,
    GetUser,
    DelUser,
    List,
    Users,
    WhoAmI,
    Cat,
    Log,
    GenPass,
    DryRun,
    Save,
    Load,
    Help,
}

impl AclCommand {
    /// The subcommand with this full name (`acl|setuser`), if it is one.
    pub(crate) fn named(name: &str) -> Option<AclCommand> {
        Some(match name.strip_prefix("acl|")? {
            "setuser" => AclCommand::SetUser,
            "getuser" => AclCommand::GetUser,
            "deluser" => AclCommand::DelUser,
            "list" => AclCommand::List,
            "users" => AclCommand::Users,
            "whoami" => AclCommand::WhoAmI,
            "cat" => AclCommand::Cat,
            "log" => AclCommand::Log,
            "genpass" => AclCommand::GenPass,
            "dryrun" => AclCommand::DryRun,
            "save" => AclCommand::Save,
            "load" => AclCommand::Load,
            "help" => AclCommand::Help,
            _ => return None,
        })
    }
}

/// Runs `ACL <sub>`; a success reply is written, an error returned.
pub(crate) fn run<B: Backend>(
    which: AclCommand,
    call: &mut ConnCall<'_, B>,
    argv: &Argv<'_>,
) -> Result<(), CommandError> {
    let door = call.backend.door().clone();
    let acl = &door.acl;
    let args: Vec<&[u8]> = argv.iter().collect();
    let syntax = || subcommand_syntax_error(args[0], args[1]);
    match which {
        AclCommand::SetUser => {
            acl.set_user(args[2], &args[3..])
                .map_err(|e| CommandError::Other(e.to_string().into()))?;
            let me = call.conn.info.id;
            call.conn.close_after_reply |= super::close_denied_subscribers(&door, args[2], me);
            call.backend.users_changed(&[args[2].to_vec()]);
            call.conn.reply(call.out).ok();
        }
        AclCommand::DelUser => {
            let removed = acl.delete_users(&args[2..]).map_err(CommandError::fixed)?;
            let me = call.conn.info.id;
            for slot in &removed {
                call.conn.close_after_reply |= kill_clients_of(&door.clients, slot, me);
            }
            if !removed.is_empty() {
                let names: Vec<Vec<u8>> = removed.iter().map(|s| s.name().to_vec()).collect();
                call.backend.users_changed(&names);
            }
            call.conn.reply(call.out).int(removed.len() as i64);
        }
        AclCommand::GetUser => {
            if args.len() != 3 {
                return Err(syntax());
            }
            get_user(call.conn, call.out, acl, args[2]);
        }
        AclCommand::List | AclCommand::Users => {
            if args.len() != 2 {
                return Err(syntax());
            }
            let lines: Vec<Vec<u8>> = if which == AclCommand::List {
                acl.list().into_iter().map(String::into_bytes).collect()
            } else {
                acl.users().iter().map(|u| u.name().to_vec()).collect()
            };
            let mut reply = call.conn.reply(call.out);
            reply.array(lines.len());
            for line in lines {
                reply.bulk(&line);
            }
        }
        AclCommand::WhoAmI => {
            if args.len() != 2 {
                return Err(syntax());
            }
            let name = call.conn.user.name().to_vec();
            call.conn.reply(call.out).bulk(&name);
        }
        AclCommand::Save | AclCommand::Load if acl.file().is_none() => {
            return Err(CommandError::fixed(super::file::NO_FILE));
        }
        AclCommand::Save => {
            acl.save_file().map_err(CommandError::fixed)?;
            call.conn.reply(call.out).ok();
        }
        AclCommand::Load => {
            let removed = acl.load_file().map_err(|e| CommandError::Other(e.into()))?;
            let me = call.conn.info.id;
            for slot in &removed {
                call.conn.close_after_reply |= kill_clients_of(&door.clients, slot, me);
            }
            let mut names: Vec<Vec<u8>> = removed.iter().map(|s| s.name().to_vec()).collect();
            for slot in acl.users() {
                call.conn.close_after_reply |=
                    super::close_denied_subscribers(&door, slot.name(), me);
                names.push(slot.name().to_vec());
            }
            names.sort();
            names.dedup();
            call.backend.users_changed(&names);
            call.conn.reply(call.out).ok();
        }
        AclCommand::Cat => cat(call.conn, call.out, &args)?,
        AclCommand::Log => log(call.conn, call.out, acl, &args)?,
        AclCommand::GenPass => {
            if args.len() > 3 {
                return Err(syntax());
            }
            let bits = match args.get(2) {
                Some(arg) => parse_i64(arg).ok_or(CommandError::NotInteger)?,
                None => 256,
            };
            if !(1..=4096).contains(&bits) {
                return Err(CommandError::fixed(
                    "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
                ));
            }
            let chars = (bits as usize).div_ceil(4);
            let mut random = vec![0u8; chars.div_ceil(2)];
            rand::rng().fill_bytes(&mut random);
            let mut hex = String::with_capacity(chars + 1);
            for byte in random {
                hex.push(char::from_digit(u32::from(byte >> 4), 16).expect("nibble"));
                hex.push(char::from_digit(u32::from(byte & 0xF), 16).expect("nibble"));
            }
            hex.truncate(chars);
            call.conn.reply(call.out).bulk(hex.as_bytes());
        }
        AclCommand::DryRun => dry_run(call.conn, call.out, acl, &args)?,
        AclCommand::Help => {
            if args.len() != 2 {
                return Err(syntax());
            }
            crate::connection::write_help(call.conn, call.out, args[0]);
        }
    }
    Ok(())
}

/// Closes the connections of a deleted user; returns whether the connection `me` is one
/// (it closes after its reply).
pub(crate) fn kill_clients_of(clients: &Clients, slot: &Arc<UserSlot>, me: u64) -> bool {
    clients.kill_user(slot.name(), me)
}

fn get_user(conn: &Conn, out: &mut Vec<u8>, acl: &Acl, name: &[u8]) {
    let Some(slot) = acl.user(name) else {
        conn.reply(out).null();
        return;
    };
    let user = slot.current();
    let mut reply = conn.reply(out);
    reply.map(6);
    reply.bulk(b"flags");
    let flags = user.flags();
    reply.set(flags.len());
    for flag in flags {
        reply.bulk(flag.as_bytes());
    }
    reply.bulk(b"passwords");
    reply.array(user.passwords.len());
    for hash in &user.passwords {
        reply.bulk(hash.as_bytes());
    }
    let describe = |reply: &mut shoal_proto::Reply<'_>, s: &super::selector::Selector| {
        reply.bulk(b"commands");
        reply.bulk(s.describe_commands().as_bytes());
        reply.bulk(b"keys");
        reply.bulk(s.describe_keys().as_bytes());
        reply.bulk(b"channels");
        reply.bulk(s.describe_channels().as_bytes());
    };
    describe(&mut reply, &user.selectors[0]);
    reply.bulk(b"selectors");
    reply.array(user.selectors.len() - 1);
    for selector in &user.selectors[1..] {
        reply.map(3);
        describe(&mut reply, selector);
    }
}

/// `ACL CAT [category]`
fn cat(conn: &Conn, out: &mut Vec<u8>, args: &[&[u8]]) -> Result<(), CommandError> {
    match args {
        [_, _] => {
            let mut reply = conn.reply(out);
            reply.array(CATEGORIES.len());
            for name in CATEGORIES {
                reply.bulk(name.as_bytes());
            }
        }
        [_, _, name] => {
            let flag = category(name).ok_or_else(|| {
                let shown = shoal_proto::args::c_str(name);
                CommandError::quoting(
                    "ERR Unknown category '",
                    &shown[..shown.len().min(128)],
                    "'",
                )
            })?;
            let names: Vec<&str> = acl_commands()
                .iter()
                .filter(|(_, categories)| categories & flag != 0)
                .map(|(name, _)| *name)
                .collect();
            let mut reply = conn.reply(out);
            reply.array(names.len());
            for name in names {
                reply.bulk(name.as_bytes());
            }
        }
        _ => return Err(subcommand_syntax_error(args[0], args[1])),
    }
    Ok(())
}

/// `ACL LOG [count | RESET]`
fn log(conn: &Conn, out: &mut Vec<u8>, acl: &Acl, args: &[&[u8]]) -> Result<(), CommandError> {
    let count = match args {
        [_, _] => 10,
        [_, _, arg] if arg.eq_ignore_ascii_case(b"reset") => {
            acl.reset_log();
            conn.reply(out).ok();
            return Ok(());
        }
        [_, _, arg] => parse_i64(arg).ok_or(CommandError::NotInteger)?.max(0) as usize,
        _ => return Err(subcommand_syntax_error(args[0], args[1])),
    };
    let (entries, now) = acl.log_entries(count);
    let mut reply = conn.reply(out);
    reply.array(entries.len());
    for entry in entries {
        reply.map(7);
        reply.bulk(b"count");
        reply.int(entry.count as i64);
        reply.bulk(b"reason");
        reply.bulk(entry.reason().as_bytes());
        reply.bulk(b"context");
        reply.bulk(b"toplevel");
        reply.bulk(b"object");
        reply.bulk(&entry.object);
        reply.bulk(b"username");
        reply.bulk(&entry.username);
        reply.bulk(b"age-seconds");
        reply.double(entry.age_seconds(now));
        reply.bulk(b"client-info");
        reply.bulk(entry.client_info.as_bytes());
    }
    Ok(())
}

/// `ACL DRYRUN username command [arg ...]`
fn dry_run(conn: &Conn, out: &mut Vec<u8>, acl: &Acl, args: &[&[u8]]) -> Result<(), CommandError> {
    if args.len() < 4 {
        return Err(subcommand_syntax_error(args[0], args[1]));
    }
    let slot = acl
        .user(args[2])
        .ok_or_else(|| CommandError::quoting("ERR User '", args[2], "' not found"))?;
    let line = &args[3..];
    let not_found = || CommandError::quoting("ERR Command '", line[0], "' not found");
    let mut command = table().lookup(line[0]).ok_or_else(not_found)?;
    if command.is_container() && line.len() >= 2 {
        command = command.subcommand(line[1]).ok_or_else(not_found)?;
    }
    if !command.spec.arity_ok(line.len()) {
        return Err(CommandError::WrongArity(command.spec.name));
    }
    let message = match Acl::check(&slot.current(), command, line) {
        Ok(()) => {
            conn.reply(out).ok();
            return Ok(());
        }
        Err(Denied::Command) => format!(
            "This user has no permissions to run the '{}' command",
            command.spec.name
        )
        .into_bytes(),
        Err(Denied::Key(pos)) => [
            &b"This user has no permissions to access the '"[..],
            shoal_proto::args::c_str(line[pos]),
            b"' key",
        ]
        .concat(),
        Err(Denied::Channel(pos)) => [
            &b"This user has no permissions to access the '"[..],
            shoal_proto::args::c_str(line[pos]),
            b"' channel",
        ]
        .concat(),
    };
    conn.reply(out).bulk(&message);
    Ok(())
}
