//! Subscribers a user's new rules no longer allow: as Redis 7's `ACLKillPubsubClientsIfNeeded`,
//! a connection of the user that holds a channel, pattern or shard-channel subscription its
//! rules now refuse is closed, so narrowing `&` patterns takes effect on those already
//! listening, not only on the next `SUBSCRIBE`.

use crate::door::Door;
use crate::pubsub::Kind;

/// Closes the connections of user `name` holding a subscription the user's current rules
/// refuse; the client `me` (the one running the change) is only marked, and the return says
/// whether it was. Returns false at once when the user may use every channel.
pub(crate) fn close_denied_subscribers(door: &Door, name: &[u8], me: u64) -> bool {
    let Some(slot) = door.acl.user(name) else {
        return false;
    };
    let user = slot.current();
    if user.selectors.iter().any(|s| s.all_channels) {
        return false;
    }
    let mut close_me = false;
    for (id, mailbox) in door.clients.mailboxes_of(name) {
        let denied = door.pubsub.holds_any(&mailbox, |kind, channel| {
            user.channel_allowed(channel, kind == Kind::Pattern)
        });
        if denied {
            let filter = crate::clients::KillFilter {
                id: Some(id),
                ..Default::default()
            };
            close_me |= door.clients.kill(&filter, me).1;
        }
    }
    close_me
}
