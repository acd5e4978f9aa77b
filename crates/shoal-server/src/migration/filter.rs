//! The part of a primary's replication stream that a migration sends: the frames (and whole
//! units) whose key is in the migrating slots, byte for byte. Everything else is left out:
//! other slots' changes, keep-alives, acknowledgement requests, the functions' set. A
//! `FLUSHALL` cannot be cut down to some slots, so it is reported instead (the import starts
//! over from a new snapshot).

use shoal_cluster::key_slot;
use shoal_proto::{Parsed, RequestParser};

use crate::cluster::migrating::SlotSet;
use crate::replication::frames::{StreamError, stream_parser, unit_len};

/// Frames whose second argument is the key they change.
const KEYED: &[&str] = &[
    "SET",
    "SHOAL.VALUE",
    "HSET",
    "HSETEX",
    "HDEL",
    "PEXPIREAT",
    "PERSIST",
    "DEL",
];

/// What one [`SlotFilter::feed`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// The stream flushed every key.
    pub flushed: bool,
}

/// Cuts a stream down to some slots' frames, keeping what is not yet a whole frame (or a
/// whole unit) for the next bytes.
pub(crate) struct SlotFilter {
    parser: RequestParser,
    pending: Vec<u8>,
}

impl Default for SlotFilter {
    fn default() -> Self {
        SlotFilter {
            parser: stream_parser(),
            pending: Vec::new(),
        }
    }
}

impl SlotFilter {
    /// Takes the next `bytes` of the stream and appends to `out` every whole frame or unit
    /// they complete whose key's slot is in `slots`.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        slots: &SlotSet,
        out: &mut Vec<u8>,
    ) -> Result<Fed, StreamError> {
        self.pending.extend_from_slice(bytes);
        let mut fed = Fed::default();
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            let n = match self.parser.parse(rest)? {
                Parsed::Command { consumed } => consumed,
                Parsed::Empty { consumed } => {
                    at += consumed;
                    continue;
                }
                Parsed::Incomplete { .. } => break,
            };
            let argv = self.parser.argv(rest);
            let name = argv.get(0);
            if argv.len() == 1 && name.eq_ignore_ascii_case(b"MULTI") {
                let Some(unit) = unit_len(&rest[n..])? else {
                    break;
                };
                if let Some(slot) = first_keyed_slot(&rest[n..n + unit])?
                    && slots.contains(slot)
                {
                    out.extend_from_slice(&rest[..n + unit]);
                }
                at += n + unit;
                continue;
            }
            if argv.len() == 1 && name.eq_ignore_ascii_case(b"FLUSHALL") {
                fed.flushed = true;
            } else if let Some(slot) = keyed_slot(&argv)
                && slots.contains(slot)
            {
                out.extend_from_slice(&rest[..n]);
            }
            at += n;
        }
        self.pending.drain(..at);
        Ok(fed)
    }
}

/// The slot of the key `argv` (a stream frame) changes, if it changes one.
fn keyed_slot(argv: &shoal_proto::Argv<'_>) -> Option<u16> {
    let name = argv.get(0);
    (argv.len() >= 2
        && KEYED
            .iter()
            .any(|k| name.eq_ignore_ascii_case(k.as_bytes())))
    .then(|| key_slot(argv.get(1)))
}

/// The slot of the first frame with a key among the frames of `unit`.
fn first_keyed_slot(unit: &[u8]) -> Result<Option<u16>, StreamError> {
    let mut parser = stream_parser();
    let mut at = 0;
    while at < unit.len() {
        match parser.parse(&unit[at..])? {
            Parsed::Command { consumed } => {
                if let Some(slot) = keyed_slot(&parser.argv(&unit[at..])) {
                    return Ok(Some(slot));
                }
                at += consumed;
            }
            Parsed::Empty { consumed } => at += consumed,
            Parsed::Incomplete { .. } => break,
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::request::encode;

    fn frame(args: &[&str]) -> Vec<u8> {
        encode(args).to_vec()
    }

    #[test]
    fn only_the_slots_frames_and_units_pass_whatever_the_cuts() {
        let mine = "a"; // slot 15495
        let other = "b"; // slot 3300
        let slots = SlotSet::of_ranges(&[(key_slot(mine.as_bytes()), key_slot(mine.as_bytes()))]);
        let mut stream = Vec::new();
        stream.extend(frame(&["SET", mine, "1"]));
        stream.extend(frame(&["SET", other, "2"]));
        stream.extend(frame(&["PING"]));
        stream.extend(frame(&["MULTI"]));
        stream.extend(frame(&["DEL", mine]));
        stream.extend(frame(&["HSET", mine, "f", "v"]));
        stream.extend(frame(&["EXEC"]));
        stream.extend(frame(&["MULTI"]));
        stream.extend(frame(&["DEL", other]));
        stream.extend(frame(&["EXEC"]));
        stream.extend(frame(&["PEXPIREAT", mine, "99"]));
        let mut want = frame(&["SET", mine, "1"]);
        want.extend(frame(&["MULTI"]));
        want.extend(frame(&["DEL", mine]));
        want.extend(frame(&["HSET", mine, "f", "v"]));
        want.extend(frame(&["EXEC"]));
        want.extend(frame(&["PEXPIREAT", mine, "99"]));
        // Fed whole, and byte by byte: the same frames come out.
        for step in [stream.len(), 1, 7] {
            let mut filter = SlotFilter::default();
            let mut out = Vec::new();
            for chunk in stream.chunks(step) {
                let fed = filter.feed(chunk, &slots, &mut out).unwrap();
                assert!(!fed.flushed);
            }
            assert_eq!(out, want, "fed {step} bytes at a time");
        }
    }

    #[test]
    fn a_flush_is_reported_not_passed() {
        let mut filter = SlotFilter::default();
        let mut out = Vec::new();
        let all = SlotSet::of_ranges(&[(0, 16383)]);
        let fed = filter.feed(&frame(&["FLUSHALL"]), &all, &mut out).unwrap();
        assert!(fed.flushed && out.is_empty());
    }
}
