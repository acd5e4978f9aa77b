//! Taking up a list of users decided elsewhere (a cluster's users, as its controller holds
//! them), without going through `ACL` commands: what differs is set, what is missing is
//! deleted and its connections closed.

use std::collections::BTreeMap;

use crate::door::Door;

/// What [`adopt_users`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// Users created or changed.
    pub set: usize,
    /// Users deleted (their connections were closed).
    pub deleted: usize,
    /// Users whose rules could not be applied, with why (they keep their old rules).
    pub refused: Vec<(String, String)>,
}

/// Makes the door's users those of `users` (each name with its rules as `ACL LIST` shows
/// them): a user whose rules differ is reset to them, a user not in `users` is deleted (the
/// `default` user is kept with its rules), and the connections of deleted users are closed.
pub fn adopt_users(door: &Door, users: &BTreeMap<String, String>) -> Adopted {
    let acl = &door.acl;
    let mut adopted = Adopted::default();
    for (name, rules) in users {
        let current = acl
            .user(name.as_bytes())
            .map(|slot| slot.current().describe());
        if current.as_deref() == Some(rules.as_str()) {
            continue;
        }
        let mut args: Vec<&[u8]> = vec![b"reset"];
        args.extend(rules.split_ascii_whitespace().map(str::as_bytes));
        match acl.set_user(name.as_bytes(), &args) {
            Ok(()) => {
                adopted.set += 1;
                super::close_denied_subscribers(door, name.as_bytes(), 0);
            }
            Err(e) => adopted.refused.push((name.clone(), e.to_string())),
        }
    }
    let gone: Vec<Vec<u8>> = acl
        .users()
        .iter()
        .map(|slot| slot.name().to_vec())
        .filter(|name| name != b"default")
        .filter(|name| std::str::from_utf8(name).map_or(true, |n| !users.contains_key(n)))
        .collect();
    if let Ok(removed) = acl.delete_users(&gone) {
        for slot in &removed {
            // No connection of this door runs the change: none is spared.
            door.clients.kill_user(slot.name(), 0);
        }
        adopted.deleted = removed.len();
    }
    adopted
}
