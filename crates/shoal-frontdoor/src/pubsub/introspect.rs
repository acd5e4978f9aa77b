//! `PUBSUB CHANNELS|SHARDCHANNELS|NUMSUB|SHARDNUMSUB|NUMPAT`: what this server's connections
//! subscribe to (a node's, or a proxy's own clients'), as Redis answers it.

use shoal_proto::{Argv, Protocol, Reply};

use super::registry::PubSub;

/// Which `PUBSUB` question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Question {
    /// `CHANNELS [pattern]`, or `SHARDCHANNELS [pattern]` with `shard`.
    Channels { shard: bool },
    /// `NUMSUB [channel ...]`, or `SHARDNUMSUB [channel ...]` with `shard`.
    NumSub { shard: bool },
    /// `NUMPAT`.
    NumPat,
}

/// Answers `question` (`argv` is the whole `PUBSUB ...` command) into `out`.
pub(crate) fn answer(
    question: Question,
    registry: &PubSub,
    protocol: Protocol,
    out: &mut Vec<u8>,
    argv: &Argv<'_>,
) {
    let mut reply = Reply::new(out, protocol);
    match question {
        Question::Channels { shard } => {
            let names = registry.channels(shard, argv.try_get(2));
            reply.array(names.len());
            for name in &names {
                reply.bulk(name);
            }
        }
        Question::NumSub { shard } => {
            // Each channel and its subscribers, flat, as Redis in both protocols.
            reply.array(2 * (argv.len() - 2));
            for channel in argv.iter().skip(2) {
                reply.bulk(channel);
                reply.int(registry.subscribers(shard, channel) as i64);
            }
        }
        Question::NumPat => reply.int(registry.patterns() as i64),
    }
}
