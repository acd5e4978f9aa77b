//! Feeds arbitrary bytes to the request parser the way a connection does, in chunks whose
//! sizes come from the input, and checks it never panics, never consumes more than it was
//! given, and parses the same commands however the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_proto::{Limits, Parsed, RequestParser};

fn run(input: &[u8], chunk: usize) -> (Vec<Vec<Vec<u8>>>, bool) {
    let limits = Limits { max_bulk_len: 1 << 20, max_args: 1 << 12 };
    let mut parser = RequestParser::new(limits);
    let mut buffer = Vec::new();
    let mut commands = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buffer.extend_from_slice(piece);
        let mut offset = 0;
        loop {
            match parser.parse(&buffer[offset..]) {
                Ok(Parsed::Command { consumed }) => {
                    assert!(consumed > 0 && offset + consumed <= buffer.len());
                    let argv = parser.argv(&buffer[offset..]);
                    assert!(!argv.is_empty());
                    commands.push(argv.iter().map(<[u8]>::to_vec).collect());
                    offset += consumed;
                }
                Ok(Parsed::Empty { consumed }) => {
                    assert!(consumed > 0 && offset + consumed <= buffer.len());
                    offset += consumed;
                }
                Ok(Parsed::Incomplete { .. }) => break,
                Err(_) => return (commands, true),
            }
        }
        buffer.drain(..offset);
    }
    (commands, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let whole = run(input, input.len());
    let pieces = run(input, usize::from(split % 17) + 1);
    assert_eq!(whole, pieces, "splitting the input changed what was parsed");
});
