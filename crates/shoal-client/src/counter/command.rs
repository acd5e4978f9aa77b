//! Shoal's sharded-counter commands, for whoever serves plain Redis clients (the proxy, a
//! `--routing forward` node, a standalone node): their arguments read once, the same way
//! everywhere, and their run through a [`Client`].
//!
//! | command | reply |
//! | --- | --- |
//! | `COUNTER.INCRBY key parts increment` | the new value of the one part it changed (a negative increment subtracts) |
//! | `COUNTER.GET key parts` | the sum of the parts, a missing part counting 0 |
//! | `COUNTER.DEL key parts` | how many parts existed |
//!
//! `parts` is 1 to [`MAX_PARTS`]; the parts are `key#1` .. `key#parts`
//! ([`part_keys`](super::part_keys)).

use bytes::Bytes;
use shoal_proto::args::parse_i64;
use shoal_proto::reply::Value;

use super::parts::{MAX_PARTS, part_key, part_keys, parts_in_range, random_part, sum};
use crate::client::Client;
use crate::error::Error;

/// What a sharded-counter command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOp {
    /// `COUNTER.INCRBY`: adds this to one part picked at random.
    IncrBy(i64),
    /// `COUNTER.GET`: sums the parts.
    Get,
    /// `COUNTER.DEL`: deletes the parts.
    Del,
}

/// A sharded-counter command line, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterCommand {
    /// The counter's key; its parts are `key#1` .. `key#parts`.
    pub key: Bytes,
    /// How many parts (1 to [`MAX_PARTS`]).
    pub parts: usize,
    /// What to do.
    pub op: CounterOp,
}

/// Why a sharded-counter command line cannot run. [`ArgsError::line`] is the error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// The name is not `COUNTER.INCRBY`, `COUNTER.GET` or `COUNTER.DEL`.
    #[error("not a COUNTER.INCRBY, COUNTER.GET or COUNTER.DEL command")]
    NotACounterCommand,
    /// The number of arguments is not the command's.
    #[error("wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    /// `parts` or `increment` is not a 64-bit integer (Redis's words).
    #[error("value is not an integer or out of range")]
    NotInteger,
    /// `parts` is not 1 to [`MAX_PARTS`].
    #[error("parts is out of range, must be between 1 and {MAX_PARTS}")]
    PartsOutOfRange,
}

impl ArgsError {
    /// The error reply a client gets: `ERR` and the message.
    pub fn line(&self) -> String {
        format!("ERR {self}")
    }
}

/// Whether `name` (a command's full name, lower case, as the command table has it) is a
/// sharded-counter command.
pub fn is_counter_command(name: &str) -> bool {
    matches!(name, "counter.incrby" | "counter.get" | "counter.del")
}

impl CounterCommand {
    /// Reads a command line (`args`, the name first, in any case).
    pub fn parse<A: AsRef<[u8]>>(args: &[A]) -> Result<CounterCommand, ArgsError> {
        let name = args.first().ok_or(ArgsError::NotACounterCommand)?.as_ref();
        let (name, arity) = if name.eq_ignore_ascii_case(b"counter.incrby") {
            ("counter.incrby", 4)
        } else if name.eq_ignore_ascii_case(b"counter.get") {
            ("counter.get", 3)
        } else if name.eq_ignore_ascii_case(b"counter.del") {
            ("counter.del", 3)
        } else {
            return Err(ArgsError::NotACounterCommand);
        };
        if args.len() != arity {
            return Err(ArgsError::WrongArity(name));
        }
        let parts = parse_i64(args[2].as_ref()).ok_or(ArgsError::NotInteger)?;
        let parts = usize::try_from(parts)
            .ok()
            .filter(|&n| parts_in_range(n))
            .ok_or(ArgsError::PartsOutOfRange)?;
        let op = match name {
            "counter.incrby" => {
                CounterOp::IncrBy(parse_i64(args[3].as_ref()).ok_or(ArgsError::NotInteger)?)
            }
            "counter.get" => CounterOp::Get,
            _ => CounterOp::Del,
        };
        Ok(CounterCommand {
            key: Bytes::copy_from_slice(args[1].as_ref()),
            parts,
            op,
        })
    }

    /// Runs it through `client`, as [`ShardedCounter`](super::ShardedCounter) does: `INCRBY`
    /// of one part picked at random, `MGET` of the parts (split by slot, sent at once), `DEL`
    /// of the parts. Its reply as a client gets it: an integer, or an error reply (a node's,
    /// such as `INCRBY`'s on a part that holds no integer, or a sum that cannot be made); `Err`
    /// only when no reply could be had.
    pub async fn run(&self, client: &Client) -> Result<Value, Error> {
        let done = match self.op {
            CounterOp::IncrBy(by) => {
                let part = part_key(&self.key, random_part(self.parts));
                client.incr_by(part, by).await.map(Value::Int)
            }
            CounterOp::Get => {
                let values = client.mget(&part_keys(&self.key, self.parts)).await?;
                return Ok(match sum(values) {
                    Ok(total) => Value::Int(total),
                    Err(e) => Value::Error(e.line().into_bytes()),
                });
            }
            CounterOp::Del => client
                .del(&part_keys(&self.key, self.parts))
                .await
                .map(|n| Value::Int(i64::try_from(n).unwrap_or(i64::MAX))),
        };
        match done {
            Err(Error::Server(line)) => Ok(Value::Error(line.into_bytes())),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<CounterCommand, ArgsError> {
        let args: Vec<&str> = line.split(' ').collect();
        CounterCommand::parse(&args)
    }

    #[test]
    fn command_lines_are_read_in_any_case() {
        assert_eq!(
            parse("COUNTER.INCRBY views 8 -5"),
            Ok(CounterCommand {
                key: Bytes::from_static(b"views"),
                parts: 8,
                op: CounterOp::IncrBy(-5),
            })
        );
        assert_eq!(parse("counter.get views 1").unwrap().op, CounterOp::Get);
        assert_eq!(parse("Counter.Del views 1024").unwrap().op, CounterOp::Del);
        assert!(is_counter_command("counter.incrby"));
        assert!(!is_counter_command("incrby"));
    }

    #[test]
    fn bad_arguments_get_redis_s_words_or_a_clear_line() {
        let not_integer = "ERR value is not an integer or out of range";
        let out_of_range = "ERR parts is out of range, must be between 1 and 1024";
        for (line, error) in [
            ("COUNTER.INCRBY x 8 five", not_integer),
            ("COUNTER.INCRBY x 8 1.5", not_integer),
            ("COUNTER.INCRBY x 8 9223372036854775808", not_integer),
            ("COUNTER.GET x eight", not_integer),
            ("COUNTER.GET x 0", out_of_range),
            ("COUNTER.GET x -3", out_of_range),
            ("COUNTER.DEL x 1025", out_of_range),
            (
                "COUNTER.GET x",
                "ERR wrong number of arguments for 'counter.get' command",
            ),
            (
                "INCRBY x 1",
                "ERR not a COUNTER.INCRBY, COUNTER.GET or COUNTER.DEL command",
            ),
        ] {
            assert_eq!(parse(line).unwrap_err().line(), error, "{line}");
        }
        assert_eq!(
            CounterCommand::parse::<&str>(&[]),
            Err(ArgsError::NotACounterCommand)
        );
    }
}
