//! Transactions as Redis Cluster serves them: every key of every command in one slot, sent to
//! the slot's primary as `MULTI`, the commands and `EXEC` in one frame, so that nothing else
//! on the connection comes between them ([`Conn::request_batch`](crate::conn::Conn)).
//!
//! What the `n + 2` replies mean: `+OK` to `MULTI`, `+QUEUED` (or the refusal) to each
//! command, and `EXEC`'s reply: the array of the commands' replies, a null when a watched key
//! changed, or an error when it ran nothing (`-EXECABORT`, `-CROSSSLOT`, `-MOVED`, ...).

use bytes::{Bytes, BytesMut};
use shoal_cluster::Slot;
use shoal_proto::reply::Value;

use crate::client::Verdict;
use crate::error::{Error, error_code};
use crate::router::{self, Route};

/// Commands that change a connection's transaction state. A shared connection cannot carry
/// them ([`Client::command`](crate::Client::command) refuses them), and a transaction's
/// commands may not be one of them (nor end the connection's state otherwise).
const TRANSACTION_STATE: &[&str] = &["multi", "exec", "discard", "watch"];

/// Commands a transaction may not hold besides those: they run at once inside `MULTI` and
/// would end it (`RESET`) or the connection (`QUIT`).
const ENDS_TRANSACTION: &[&str] = &["reset", "quit"];

/// Error codes of a refusal that says where or when to try again: nothing ran.
const ROUTING_CODES: &[&[u8]] = &[b"MOVED", b"ASK", b"TRYAGAIN", b"CLUSTERDOWN", b"LOADING"];

/// `MULTI` and `EXEC`, as frames.
const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

/// A transaction ready to send.
#[derive(Debug)]
pub(crate) struct Batch {
    /// `MULTI`, the commands and `EXEC`, in one frame.
    pub frame: Bytes,
    /// How many replies the frame gets (the commands' and two).
    pub replies: usize,
    /// The slot of every key, if there are keys.
    pub slot: Option<Slot>,
    /// Whether every command only reads (so the transaction may be sent again after a
    /// timeout).
    pub readonly: bool,
}

/// Checks `commands` (each the name first) and frames them as one transaction: every key
/// in one slot ([`Error::CrossSlot`] otherwise: commands the client splits elsewhere cannot
/// be split in a transaction), none of them `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `RESET` or
/// `QUIT` ([`Error::Config`]).
pub(crate) fn batch<C, A>(commands: &[C]) -> Result<Batch, Error>
where
    C: AsRef<[A]>,
    A: AsRef<[u8]>,
{
    let mut slot = None;
    let mut readonly = true;
    let mut frame = BytesMut::from(MULTI);
    for args in commands {
        let args = args.as_ref();
        refuse_named(args, ENDS_TRANSACTION, "inside a transaction")?;
        refuse_named(args, TRANSACTION_STATE, "inside a transaction")?;
        let routed = router::route(args)?;
        readonly &= routed.readonly;
        match routed.route {
            Route::Any => {}
            Route::Slot(this) if slot.is_none_or(|s| s == this) => slot = Some(this),
            Route::Slot(_) | Route::Split(_) => return Err(Error::CrossSlot),
        }
        frame.extend_from_slice(&shoal_proto::request::encode(args));
    }
    frame.extend_from_slice(EXEC);
    Ok(Batch {
        frame: frame.freeze(),
        replies: commands.len() + 2,
        slot,
        readonly,
    })
}

/// Refuses a command that would change a connection's transaction state (`MULTI`, `EXEC`,
/// `DISCARD`, `WATCH`) sent on its own: the error says it cannot be sent `where_`.
pub(crate) fn refuse_state<A: AsRef<[u8]>>(args: &[A], where_: &str) -> Result<(), Error> {
    refuse_named(args, TRANSACTION_STATE, where_)
}

fn refuse_named<A: AsRef<[u8]>>(args: &[A], names: &[&str], where_: &str) -> Result<(), Error> {
    let Some(name) = args.first() else {
        return Ok(());
    };
    let name = name.as_ref();
    match names
        .iter()
        .find(|n| n.as_bytes().eq_ignore_ascii_case(name))
    {
        Some(n) => Err(Error::Config(format!(
            "{} cannot be sent {where_}",
            n.to_ascii_uppercase()
        ))),
        None => Ok(()),
    }
}

/// The error line of an error reply.
fn error_line(reply: &Value) -> Option<&[u8]> {
    match reply {
        Value::Error(line) | Value::BulkError(line) => Some(line),
        _ => None,
    }
}

/// Which of a transaction's replies decides what became of it: `EXEC`'s, unless `EXEC`
/// refused and a queued command was refused for a reason that says where or when to try
/// again (`-MOVED`, `-ASK`, `-TRYAGAIN`, `-CLUSTERDOWN`, `-LOADING`): then that one.
fn deciding(replies: &[Value]) -> Option<usize> {
    let (exec, queued) = replies.split_last()?;
    error_line(exec)?;
    let refused = queued.iter().position(|reply| {
        error_line(reply).is_some_and(|line| ROUTING_CODES.contains(&error_code(line)))
    });
    Some(refused.unwrap_or(queued.len()))
}

/// A transaction's replies decide by the reply [`deciding`] picks: `None` when it ran (or a
/// watched key changed), final.
impl Verdict for Vec<Value> {
    fn verdict(&self) -> Option<&[u8]> {
        deciding(self).and_then(|i| error_line(&self[i]))
    }
}

/// What a transaction answers: `EXEC`'s reply, or the refusal that kept it from running when
/// that says more (see [`deciding`]).
pub(crate) fn outcome(mut replies: Vec<Value>) -> Value {
    match deciding(&replies) {
        Some(i) if i + 1 < replies.len() => replies.swap_remove(i),
        _ => replies.pop().unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_cluster::key_slot;

    fn error(line: &str) -> Value {
        Value::Error(line.as_bytes().to_vec())
    }

    fn ok(text: &str) -> Value {
        Value::Simple(text.as_bytes().to_vec())
    }

    #[test]
    fn a_transaction_is_one_frame_on_one_slot() {
        let commands = [vec!["SET", "{u}a", "1"], vec!["INCR", "{u}b"], vec!["PING"]];
        let framed = batch(&commands).unwrap();
        assert_eq!(framed.replies, 5);
        assert_eq!(framed.slot, Some(key_slot(b"u")));
        assert!(!framed.readonly);
        let mut expected = shoal_proto::request::encode(&["MULTI"]);
        for c in &commands {
            expected.extend_from_slice(&shoal_proto::request::encode(c));
        }
        expected.extend_from_slice(&shoal_proto::request::encode(&["EXEC"]));
        assert_eq!(&framed.frame[..], &expected[..]);
        let reads = batch(&[["GET", "a"], ["TTL", "a"]]).unwrap();
        assert!(reads.readonly);
        let empty: [[&str; 1]; 0] = [];
        let nothing = batch(&empty).unwrap();
        assert_eq!((nothing.replies, nothing.slot), (2, None));
    }

    #[test]
    fn keys_in_several_slots_and_state_commands_are_refused() {
        assert_ne!(key_slot(b"a"), key_slot(b"b"));
        assert!(matches!(
            batch(&[vec!["SET", "a", "1"], vec!["SET", "b", "1"]]),
            Err(Error::CrossSlot)
        ));
        assert!(matches!(
            batch(&[vec!["MGET", "a", "b"]]),
            Err(Error::CrossSlot)
        ));
        for name in ["multi", "EXEC", "Discard", "WATCH", "reset", "QUIT"] {
            match batch(&[vec![name]]) {
                Err(Error::Config(message)) => {
                    assert!(message.contains(&name.to_ascii_uppercase()), "{message}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let no_args: [&str; 0] = [];
        assert!(matches!(batch(&[no_args]), Err(Error::Config(_))));
        assert!(refuse_state(&["watch", "k"], "here").is_err());
        assert!(refuse_state(&["UNWATCH"], "here").is_ok());
        assert!(refuse_state(&["GET", "k"], "here").is_ok());
    }

    #[test]
    fn exec_decides_unless_a_refusal_says_where_to_go() {
        let ran = vec![ok("OK"), ok("QUEUED"), Value::Array(vec![Value::Int(1)])];
        assert_eq!(Verdict::verdict(&ran), None);
        assert_eq!(outcome(ran), Value::Array(vec![Value::Int(1)]));
        let watched = vec![ok("OK"), ok("QUEUED"), Value::Null];
        assert_eq!(Verdict::verdict(&watched), None);
        assert_eq!(outcome(watched), Value::Null);
        let moved = vec![
            ok("OK"),
            error("MOVED 5 127.0.0.1:7001"),
            error("EXECABORT Transaction discarded because of previous errors."),
        ];
        assert_eq!(
            Verdict::verdict(&moved),
            Some(&b"MOVED 5 127.0.0.1:7001"[..])
        );
        assert_eq!(outcome(moved), error("MOVED 5 127.0.0.1:7001"));
        let aborted = vec![
            ok("OK"),
            error("ERR wrong number of arguments for 'get' command"),
            error("EXECABORT Transaction discarded because of previous errors."),
        ];
        let line = b"EXECABORT Transaction discarded because of previous errors.";
        assert_eq!(Verdict::verdict(&aborted), Some(&line[..]));
        assert_eq!(outcome(aborted), Value::Error(line.to_vec()));
        let refused_at_exec = vec![
            ok("OK"),
            ok("QUEUED"),
            error("CLUSTERDOWN The cluster is down"),
        ];
        assert_eq!(
            Verdict::verdict(&refused_at_exec),
            Some(&b"CLUSTERDOWN The cluster is down"[..])
        );
        // A command's own error inside a transaction that ran is just its reply.
        let ran_with_error = vec![
            ok("OK"),
            ok("QUEUED"),
            Value::Array(vec![error("MOVED 1 x:1")]),
        ];
        assert_eq!(Verdict::verdict(&ran_with_error), None);
    }
}
