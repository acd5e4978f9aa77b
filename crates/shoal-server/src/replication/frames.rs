//! The replication stream's frames: RESP commands a replica applies as states, never as the
//! commands that produced them.
//!
//! | frame | meaning |
//! | --- | --- |
//! | `SET key value [PXAT ms]` | the key now holds this string (and expiry) |
//! | `SHOAL.VALUE key hash payload [PXAT ms]` | the key now holds this whole hash (its fields |
//! | | packed, as `Store::restore_value` reads them), and expiry: a snapshot's hash, `RENAME`, `COPY` |
//! | `HSET key field value` | the field now holds this value, without expiry (the hash is created |
//! | | if needed; the key's own expiry is unchanged) |
//! | `HSETEX key PXAT ms FIELDS 1 field value` | the same, the field expiring at `ms` |
//! | `HDEL key field` | the field is gone |
//! | `PEXPIREAT key ms` / `PERSIST key` | the key (not a string: a string's change is a `SET`) |
//! | | now expires at `ms` / never |
//! | `DEL key` | the key is gone |
//! | `FLUSHALL` | every key is gone |
//! | `SHOAL.FUNCTIONS payload` | the functions' libraries are now these (a `FUNCTION DUMP` |
//! | | payload): after every `FUNCTION LOAD`/`DELETE`/`FLUSH`/`RESTORE`, and first in a snapshot |
//! | `PING` | the primary is alive (every second while idle) |
//! | `REPLCONF GETACK *` | acknowledge now (a client is in `WAIT`) |
//! | `SHOAL.SNAPSHOT END` | a full resync's snapshot is complete (not counted in offsets) |
//! | `MULTI` ... `EXEC` | the frames between are one unit (a transaction's effects): a replica |
//! | | applies them together, in its store's exclusive section, never half of them |

use shoal_proto::{Argv, Limits, Parsed, ProtocolError, RequestParser, peek_key};
use shoal_store::{Kind, Store};

/// The frame that ends a snapshot.
pub const SNAPSHOT_END: &[u8] = b"*2\r\n$14\r\nSHOAL.SNAPSHOT\r\n$3\r\nEND\r\n";

/// The keep-alive frame.
pub const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// `FLUSHALL`.
pub const FLUSHALL: &[u8] = b"*1\r\n$8\r\nFLUSHALL\r\n";

/// Opens a unit of frames applied together.
pub const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";

/// Closes a unit opened by [`MULTI`].
pub const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

/// `REPLCONF GETACK *`: acknowledge now (counted in offsets, as every stream byte).
pub const GETACK: &[u8] = b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n";

fn header(out: &mut impl Extend<u8>, kind: u8, n: usize) {
    let mut digits = itoa::Buffer::new();
    out.extend([kind]);
    out.extend(digits.format(n).bytes());
    out.extend(*b"\r\n");
}

fn bulk(out: &mut impl Extend<u8>, data: &[u8]) {
    header(out, b'$', data.len());
    out.extend(data.iter().copied());
    out.extend(*b"\r\n");
}

/// Appends the frame stating that the functions' libraries are those of `payload` (a
/// `FUNCTION DUMP` payload).
pub fn functions(out: &mut impl Extend<u8>, payload: &[u8]) {
    header(out, b'*', 2);
    bulk(out, b"SHOAL.FUNCTIONS");
    bulk(out, payload);
}

/// Appends the frame stating that `key` holds `value` (expiring at `expiry`).
pub fn put(out: &mut impl Extend<u8>, key: &[u8], value: &[u8], expiry: Option<u64>) {
    header(out, b'*', if expiry.is_some() { 5 } else { 3 });
    bulk(out, b"SET");
    bulk(out, key);
    bulk(out, value);
    if let Some(at) = expiry {
        bulk(out, b"PXAT");
        let mut digits = itoa::Buffer::new();
        bulk(out, digits.format(at).as_bytes());
    }
}

/// Appends the frame stating that `key` holds the value of `kind` whose whole state is
/// `payload` (expiring at `expiry`).
pub fn put_value(
    out: &mut impl Extend<u8>,
    key: &[u8],
    kind: Kind,
    payload: &[u8],
    expiry: Option<u64>,
) {
    header(out, b'*', if expiry.is_some() { 6 } else { 4 });
    bulk(out, b"SHOAL.VALUE");
    bulk(out, key);
    bulk(out, kind.name().as_bytes());
    bulk(out, payload);
    if let Some(at) = expiry {
        bulk(out, b"PXAT");
        bulk(out, itoa::Buffer::new().format(at).as_bytes());
    }
}

/// Appends the frame stating that `key` holds a value of `kind` (a snapshot's entry).
pub fn put_any(
    out: &mut impl Extend<u8>,
    key: &[u8],
    kind: Kind,
    value: &[u8],
    expiry: Option<u64>,
) {
    match kind {
        Kind::String => put(out, key, value, expiry),
        kind => put_value(out, key, kind, value, expiry),
    }
}

/// Appends the frame stating that field `field` of the hash `key` holds `value` (expiring at
/// `expiry`).
pub fn put_field(
    out: &mut impl Extend<u8>,
    key: &[u8],
    field: &[u8],
    value: &[u8],
    expiry: Option<u64>,
) {
    match expiry {
        None => {
            header(out, b'*', 4);
            bulk(out, b"HSET");
            bulk(out, key);
        }
        Some(at) => {
            header(out, b'*', 8);
            bulk(out, b"HSETEX");
            bulk(out, key);
            bulk(out, b"PXAT");
            bulk(out, itoa::Buffer::new().format(at).as_bytes());
            bulk(out, b"FIELDS");
            bulk(out, b"1");
        }
    }
    bulk(out, field);
    bulk(out, value);
}

/// Appends the frame stating that field `field` of the hash `key` is gone.
pub fn delete_field(out: &mut impl Extend<u8>, key: &[u8], field: &[u8]) {
    header(out, b'*', 3);
    bulk(out, b"HDEL");
    bulk(out, key);
    bulk(out, field);
}

/// Appends the frame stating that `key` (not a string) expires at `expiry` or never.
pub fn set_expiry(out: &mut impl Extend<u8>, key: &[u8], expiry: Option<u64>) {
    match expiry {
        Some(at) => {
            header(out, b'*', 3);
            bulk(out, b"PEXPIREAT");
            bulk(out, key);
            bulk(out, itoa::Buffer::new().format(at).as_bytes());
        }
        None => {
            header(out, b'*', 2);
            bulk(out, b"PERSIST");
            bulk(out, key);
        }
    }
}

/// Appends the frame stating that `key` is gone.
pub fn delete(out: &mut impl Extend<u8>, key: &[u8]) {
    header(out, b'*', 2);
    bulk(out, b"DEL");
    bulk(out, key);
}

/// What applying one frame meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A state change (or a keep-alive): counts in the offset.
    Change,
    /// The end of a snapshot.
    SnapshotEnd,
    /// `REPLCONF GETACK`: the primary asks for an acknowledgement now.
    AckRequested,
}

/// Why a stream could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Not RESP.
    #[error("replication stream: {0}")]
    Protocol(#[from] ProtocolError),
    /// A frame that is not one of the stream's.
    #[error("replication stream: unexpected frame {0}")]
    Unexpected(String),
}

/// Parses the replication stream and applies it to a store.
pub struct Applier {
    parser: RequestParser,
    /// Where `SHOAL.FUNCTIONS` frames go (none: they are skipped).
    functions: Option<std::sync::Arc<crate::scripting::Functions>>,
}

impl Default for Applier {
    fn default() -> Self {
        Applier::new()
    }
}

impl Applier {
    /// An applier for a fresh stream.
    pub fn new() -> Applier {
        Applier {
            parser: stream_parser(),
            functions: None,
        }
    }

    /// Restores the functions of `SHOAL.FUNCTIONS` frames into `functions`.
    pub fn with_functions(
        mut self,
        functions: std::sync::Arc<crate::scripting::Functions>,
    ) -> Applier {
        self.functions = Some(functions);
        self
    }

    /// Applies the complete frames at the start of `buf` to `store`, calling `on_frame` with
    /// each frame's length and meaning, and stops after a snapshot's end marker (what follows
    /// it is the stream, counted from the snapshot's offset). Returns the bytes consumed (an
    /// incomplete frame stays).
    pub fn apply(
        &mut self,
        buf: &[u8],
        store: &Store,
        mut on_frame: impl FnMut(usize, Applied),
    ) -> Result<usize, StreamError> {
        let mut consumed = 0;
        loop {
            match self.parser.parse(&buf[consumed..])? {
                Parsed::Command { consumed: n } => {
                    let argv = self.parser.argv(&buf[consumed..]);
                    if argv.len() == 1 && is(argv.get(0), "MULTI") {
                        let rest = &buf[consumed + n..];
                        let Some(unit) = unit_len(rest)? else {
                            // Applied once the whole unit is here.
                            return Ok(consumed);
                        };
                        on_frame(n, Applied::Change);
                        consumed += n;
                        store.exclusive(|| self.apply_unit(&rest[..unit], store, &mut on_frame))?;
                        consumed += unit;
                        continue;
                    }
                    // The next frame's key is usually here already: fetch its index entry
                    // while this one is applied, as a session does for pipelined commands.
                    if let Some(next) = peek_key(&buf[consumed + n..]) {
                        store.prefetch(next);
                    }
                    let applied = apply_frame(&argv, store, self.functions.as_deref())?;
                    consumed += n;
                    on_frame(n, applied);
                    if applied == Applied::SnapshotEnd {
                        return Ok(consumed);
                    }
                }
                Parsed::Empty { consumed: n } => consumed += n,
                Parsed::Incomplete { .. } => return Ok(consumed),
            }
        }
    }
}

impl Applier {
    /// Applies the frames of a unit, `EXEC` included (all complete).
    fn apply_unit(
        &mut self,
        unit: &[u8],
        store: &Store,
        on_frame: &mut impl FnMut(usize, Applied),
    ) -> Result<(), StreamError> {
        let mut consumed = 0;
        while consumed < unit.len() {
            match self.parser.parse(&unit[consumed..])? {
                Parsed::Command { consumed: n } => {
                    let argv = self.parser.argv(&unit[consumed..]);
                    let applied = apply_frame(&argv, store, self.functions.as_deref())?;
                    consumed += n;
                    on_frame(n, applied);
                }
                Parsed::Empty { consumed: n } => consumed += n,
                Parsed::Incomplete { .. } => break,
            }
        }
        Ok(())
    }
}

/// A parser of the stream's frames: any value size, few arguments.
pub(crate) fn stream_parser() -> RequestParser {
    RequestParser::new(Limits {
        max_bulk_len: usize::MAX,
        max_args: 16,
    })
}

/// The length of the unit at the start of `rest` (after its `MULTI`), through its `EXEC`;
/// `None` while the stream has not brought all of it. Parsed with a parser of its own, so
/// the applier's stays at a frame boundary.
pub(crate) fn unit_len(rest: &[u8]) -> Result<Option<usize>, StreamError> {
    let mut parser = stream_parser();
    let mut len = 0;
    loop {
        match parser.parse(&rest[len..])? {
            Parsed::Command { consumed } => {
                let argv = parser.argv(&rest[len..]);
                len += consumed;
                if argv.len() == 1 && is(argv.get(0), "EXEC") {
                    return Ok(Some(len));
                }
            }
            Parsed::Empty { consumed } => len += consumed,
            Parsed::Incomplete { .. } => return Ok(None),
        }
    }
}

fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

fn apply_frame(
    argv: &Argv<'_>,
    store: &Store,
    functions: Option<&crate::scripting::Functions>,
) -> Result<Applied, StreamError> {
    let unexpected = || {
        let words: Vec<String> = argv
            .iter()
            .take(3)
            .map(|a| String::from_utf8_lossy(&a[..a.len().min(40)]).into_owned())
            .collect();
        StreamError::Unexpected(words.join(" "))
    };
    let name = argv.get(0);
    // `PXAT ms` at `at`, if the frame has it there.
    let pxat = |at: usize| -> Result<Option<u64>, StreamError> {
        if argv.len() <= at {
            return Ok(None);
        }
        if !is(argv.get(at), "PXAT") {
            return Err(unexpected());
        }
        Ok(Some(
            shoal_store::parse_i64(argv.get(at + 1)).ok_or_else(unexpected)? as u64,
        ))
    };
    // A value the store cannot hold (over its limits) is dropped here as on the primary it
    // could not have been written; nothing else may stop the stream.
    let stored = |result: Result<(), shoal_store::StoreError>| {
        if let Err(e) = result {
            tracing::warn!("replica could not store a key: {e}");
        }
        Ok(Applied::Change)
    };
    match argv.len() {
        3 | 5 if is(name, "SET") => {
            let expiry = pxat(3)?;
            stored(store.restore(argv.get(1), argv.get(2), expiry))
        }
        4 | 6 if is(name, "SHOAL.VALUE") && is(argv.get(2), "hash") => {
            let expiry = pxat(4)?;
            stored(store.restore_value(argv.get(1), Kind::Hash, argv.get(3), expiry))
        }
        4 if is(name, "HSET") => {
            let state = Some((argv.get(3), None));
            stored(store.restore_field(argv.get(1), argv.get(2), state))
        }
        8 if is(name, "HSETEX") && is(argv.get(4), "FIELDS") && argv.get(5) == b"1" => {
            let expiry = pxat(2)?;
            let state = Some((argv.get(7), expiry));
            stored(store.restore_field(argv.get(1), argv.get(6), state))
        }
        3 if is(name, "HDEL") => stored(store.restore_field(argv.get(1), argv.get(2), None)),
        3 if is(name, "PEXPIREAT") => {
            let at = shoal_store::parse_i64(argv.get(2)).ok_or_else(unexpected)? as u64;
            stored(store.restore_expiry(argv.get(1), Some(at)))
        }
        2 if is(name, "PERSIST") => stored(store.restore_expiry(argv.get(1), None)),
        2 if is(name, "DEL") => {
            store.remove(argv.get(1));
            Ok(Applied::Change)
        }
        2 if is(name, "SHOAL.FUNCTIONS") => {
            use crate::scripting::functions::RestorePolicy;
            if let Some(functions) = functions
                && let Err(e) = functions.restore(None, argv.get(1), RestorePolicy::Flush)
            {
                // The primary loaded these: only a limit of this node's could refuse them.
                tracing::warn!("replica could not restore its primary's functions: {e}");
            }
            Ok(Applied::Change)
        }
        1 if is(name, "FLUSHALL") => {
            store.clear();
            Ok(Applied::Change)
        }
        // The end of a unit (or a unit's end alone, when a resync's stream starts inside a
        // unit whose earlier effects its snapshot holds).
        1 if is(name, "PING") || is(name, "EXEC") => Ok(Applied::Change),
        2 if is(name, "SHOAL.SNAPSHOT") && is(argv.get(1), "END") => Ok(Applied::SnapshotEnd),
        3 if is(name, "REPLCONF") && is(argv.get(1), "GETACK") => Ok(Applied::AckRequested),
        _ => Err(unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use shoal_store::{KeyTtl, ManualClock, StoreConfig};

    fn store() -> Store {
        Store::new(StoreConfig {
            clock: Arc::new(ManualClock::new(1_000)),
            ..StoreConfig::default()
        })
    }

    #[test]
    fn frames_apply_as_states_split_anywhere() {
        let mut stream = Vec::new();
        put(&mut stream, b"a", b"1", None);
        put(&mut stream, b"b", b"two\r\n", Some(50_000));
        delete(&mut stream, b"a");
        stream.extend_from_slice(PING);
        put(&mut stream, b"c", b"3", None);
        stream.extend_from_slice(SNAPSHOT_END);
        let total = stream.len();
        for cut in 0..total {
            let s = store();
            let mut applier = Applier::new();
            let mut counted = 0;
            let mut ends = 0;
            let mut on = |n: usize, applied: Applied| match applied {
                Applied::SnapshotEnd => ends += 1,
                _ => counted += n,
            };
            let mut done = applier.apply(&stream[..cut], &s, &mut on).unwrap();
            while done < total {
                let n = applier.apply(&stream[done..], &s, &mut on).unwrap();
                assert!(n > 0, "cut at {cut}: stuck at {done}");
                done += n;
            }
            assert_eq!(counted, total - SNAPSHOT_END.len());
            assert_eq!(ends, 1);
            assert_eq!(s.get(b"a", |v| v.to_vec()).unwrap(), None);
            assert_eq!(
                s.get(b"b", |v| v.to_vec()).unwrap(),
                Some(b"two\r\n".to_vec())
            );
            assert_eq!(s.ttl(b"b"), KeyTtl::ExpiresAt(50_000));
            assert_eq!(s.get(b"c", |v| v.to_vec()).unwrap(), Some(b"3".to_vec()));
        }
    }

    #[test]
    fn a_unit_applies_only_once_all_of_it_is_here_and_a_stray_exec_is_nothing() {
        let mut stream = Vec::new();
        put(&mut stream, b"before", b"0", None);
        stream.extend_from_slice(MULTI);
        put(&mut stream, b"a", b"1", None);
        stream.extend_from_slice(PING);
        put(&mut stream, b"b", b"1", None);
        stream.extend_from_slice(EXEC);
        // A resync's stream may start inside a unit: its end alone is harmless.
        stream.extend_from_slice(EXEC);
        let total = stream.len();
        let unit_start = stream
            .windows(MULTI.len())
            .position(|w| w == MULTI)
            .unwrap();
        let unit_end = unit_start
            + stream[unit_start..]
                .windows(EXEC.len())
                .position(|w| w == EXEC)
                .unwrap()
            + EXEC.len();
        for cut in 0..total {
            let s = store();
            let mut applier = Applier::new();
            let mut counted = 0;
            let mut on = |n: usize, _: Applied| counted += n;
            let first = applier.apply(&stream[..cut], &s, &mut on).unwrap();
            let (a, b) = (
                s.get(b"a", |v| v.to_vec()).unwrap(),
                s.get(b"b", |v| v.to_vec()).unwrap(),
            );
            if cut < unit_end {
                // Not all of the unit is here: none of it is applied, and it stays.
                assert!(first <= unit_start, "cut at {cut}: consumed {first}");
                assert_eq!((a, b), (None, None), "cut at {cut}");
            } else {
                assert_eq!((a, b), (Some(b"1".to_vec()), Some(b"1".to_vec())));
            }
            let mut done = first;
            while done < total {
                let n = applier.apply(&stream[done..], &s, &mut on).unwrap();
                assert!(n > 0, "cut at {cut}: stuck at {done}");
                done += n;
            }
            assert_eq!(counted, total, "every byte counts in the offset");
            assert_eq!(s.get(b"b", |v| v.to_vec()).unwrap(), Some(b"1".to_vec()));
        }
    }

    /// What the hash `key` holds, as sorted `field=value` strings (empty: no hash).
    fn fields(s: &Store, key: &[u8]) -> Vec<String> {
        let mut out = s
            .hash_read(key, |h| {
                let mut out = Vec::new();
                if let Some(h) = h {
                    h.for_each(|f| {
                        out.push(format!(
                            "{}={}@{:?}",
                            String::from_utf8_lossy(f.name),
                            String::from_utf8_lossy(f.value),
                            f.expiry
                        ))
                    });
                }
                out
            })
            .unwrap();
        out.sort();
        out
    }

    #[test]
    fn hash_frames_apply_as_states() {
        let mut stream = Vec::new();
        put_field(&mut stream, b"h", b"a", b"1", None);
        put_field(&mut stream, b"h", b"b", b"2", Some(90_000));
        put_field(&mut stream, b"h", b"c", b"3", None);
        delete_field(&mut stream, b"h", b"c");
        set_expiry(&mut stream, b"h", Some(50_000));
        // A whole hash (a snapshot's, a RENAME's) replaces what the key held.
        put(&mut stream, b"w", b"a string", None);
        let payload = b"\x00\x01x\x011\x01y\x012";
        put_any(&mut stream, b"w", Kind::Hash, payload, None);
        set_expiry(&mut stream, b"w", Some(70_000));
        set_expiry(&mut stream, b"w", None);
        // The last field of a hash going takes the key.
        put_field(&mut stream, b"gone", b"f", b"v", None);
        delete_field(&mut stream, b"gone", b"f");
        let total = stream.len();
        for cut in 0..total {
            let s = store();
            let mut applier = Applier::new();
            let mut done = applier.apply(&stream[..cut], &s, |_, _| {}).unwrap();
            while done < total {
                done += applier.apply(&stream[done..], &s, |_, _| {}).unwrap();
            }
            assert_eq!(fields(&s, b"h"), ["a=1@None", "b=2@Some(90000)"]);
            assert_eq!(s.ttl(b"h"), KeyTtl::ExpiresAt(50_000));
            assert_eq!(fields(&s, b"w"), ["x=1@None", "y=2@None"]);
            assert_eq!(s.ttl(b"w"), KeyTtl::Persistent);
            assert_eq!(s.kind_of(b"gone"), None);
        }
        // A malformed payload is dropped, and the stream goes on.
        let mut bad = Vec::new();
        put_value(&mut bad, b"x", Kind::Hash, b"\x00\x05ab", None);
        put(&mut bad, b"after", b"1", None);
        let s = store();
        Applier::new().apply(&bad, &s, |_, _| {}).unwrap();
        assert_eq!(s.kind_of(b"x"), None);
        assert_eq!(
            s.get(b"after", |v| v.to_vec()).unwrap(),
            Some(b"1".to_vec())
        );
    }

    #[test]
    fn foreign_frames_stop_the_stream() {
        let s = store();
        for frame in [
            &b"*2\r\n$4\r\nINCR\r\n$1\r\nx\r\n"[..],
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$1\r\n5\r\n",
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$4\r\nPXAT\r\n$3\r\nabc\r\n",
        ] {
            assert!(matches!(
                Applier::new().apply(frame, &s, |_, _| {}),
                Err(StreamError::Unexpected(_))
            ));
        }
        assert!(matches!(
            Applier::new().apply(b"*1\r\n$-5\r\n", &s, |_, _| {}),
            Err(StreamError::Protocol(_))
        ));
    }

    #[test]
    fn flushall_clears_and_getack_is_reported() {
        let s = store();
        let mut stream = Vec::new();
        put(&mut stream, b"a", b"1", None);
        stream.extend_from_slice(FLUSHALL);
        stream.extend_from_slice(b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n");
        let mut seen = Vec::new();
        Applier::new()
            .apply(&stream, &s, |_, a| seen.push(a))
            .unwrap();
        assert_eq!(seen.last(), Some(&Applied::AckRequested));
        assert_eq!(s.len(), 0);
    }
}
