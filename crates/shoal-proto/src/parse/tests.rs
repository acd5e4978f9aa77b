use super::*;
use crate::request::encode;
use proptest::prelude::*;

/// Feeds `input` to a fresh parser the way a connection does and returns every command's
/// arguments, plus the error that ended the stream, if any.
fn parse_all(input: &[u8], limits: Limits) -> (Vec<Vec<Vec<u8>>>, Option<ProtocolError>) {
    let mut parser = RequestParser::new(limits);
    let mut commands = Vec::new();
    let mut off = 0;
    loop {
        match parser.parse(&input[off..]) {
            Ok(Parsed::Command { consumed }) => {
                commands.push(
                    parser
                        .argv(&input[off..])
                        .iter()
                        .map(<[u8]>::to_vec)
                        .collect(),
                );
                off += consumed;
            }
            Ok(Parsed::Empty { consumed }) => off += consumed,
            Ok(Parsed::Incomplete { .. }) => return (commands, None),
            Err(e) => return (commands, Some(e)),
        }
    }
}

/// Delivers `input` in the chunks given by `cuts`, keeping unconsumed bytes as a connection's
/// read buffer does, and returns the commands parsed.
fn parse_in_chunks(input: &[u8], cuts: &[usize]) -> Vec<Vec<Vec<u8>>> {
    let mut parser = RequestParser::new(Limits::default());
    let mut buffer: Vec<u8> = Vec::new();
    let mut commands = Vec::new();
    let mut fed = 0;
    let mut cut_points: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
    cut_points.sort_unstable();
    cut_points.push(input.len());
    for cut in cut_points {
        buffer.extend_from_slice(&input[fed..cut]);
        fed = cut;
        let mut off = 0;
        loop {
            match parser.parse(&buffer[off..]).expect("valid input") {
                Parsed::Command { consumed } => {
                    commands.push(
                        parser
                            .argv(&buffer[off..])
                            .iter()
                            .map(<[u8]>::to_vec)
                            .collect(),
                    );
                    off += consumed;
                }
                Parsed::Empty { consumed } => off += consumed,
                Parsed::Incomplete { .. } => break,
            }
        }
        buffer.drain(..off);
    }
    assert!(buffer.is_empty(), "bytes left over: {buffer:?}");
    commands
}

fn cmd(args: &[&[u8]]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

#[test]
fn multibulk_commands_parse_with_binary_data() {
    let input = b"*3\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n";
    let (commands, err) = parse_all(input, Limits::default());
    assert_eq!(err, None);
    assert_eq!(
        commands,
        vec![cmd(&[b"SET", b"a\r\nb", b""]), cmd(&[b"PING"])]
    );
}

#[test]
fn empty_frames_are_skipped_like_redis() {
    let (commands, err) = parse_all(b"*0\r\n*-1\r\n\r\n\n  \r\nPING\r\n", Limits::default());
    assert_eq!(err, None);
    assert_eq!(commands, vec![cmd(&[b"PING"])]);
}

#[test]
fn inline_commands_follow_redis_quoting() {
    let (commands, err) = parse_all(
        b"  set k  \"a\\x41b\\n\"  \r\nECHO 'it\\'s'\nGET a\"b c\"d\r\n",
        Limits::default(),
    );
    assert_eq!(err, Some(ProtocolError::UnbalancedQuotes));
    assert_eq!(
        commands,
        vec![cmd(&[b"set", b"k", b"aAb\n"]), cmd(&[b"ECHO", b"it's"])]
    );
    let (_, err) = parse_all(b"PING \"unterminated\r\n", Limits::default());
    assert_eq!(err, Some(ProtocolError::UnbalancedQuotes));
    let (commands, _) = parse_all(b"ECHO \"\"\r\n", Limits::default());
    assert_eq!(commands, vec![cmd(&[b"ECHO", b""])]);
}

#[test]
fn malformed_frames_get_redis_errors() {
    let cases: &[(&[u8], ProtocolError)] = &[
        (b"*x\r\n", ProtocolError::InvalidMultibulkLength),
        (b"*1\r\n$-1\r\n", ProtocolError::InvalidBulkLength),
        (b"*1\r\n$abc\r\n", ProtocolError::InvalidBulkLength),
        (b"*1\r\n$01\r\n", ProtocolError::InvalidBulkLength),
        (
            b"*1\r\n$99999999999999999999\r\n",
            ProtocolError::InvalidBulkLength,
        ),
        (b"*1\r\n+PING\r\n", ProtocolError::ExpectedDollar(b'+')),
        (b"*1\r\n$4\r\nPINGXX", ProtocolError::ExpectedCrlf),
    ];
    for (input, expected) in cases {
        let (commands, err) = parse_all(input, Limits::default());
        assert!(commands.is_empty());
        assert_eq!(
            err.as_ref(),
            Some(expected),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(
        ProtocolError::ExpectedDollar(b'+').to_string(),
        "Protocol error: expected '$', got '+'"
    );
}

#[test]
fn limits_are_enforced_before_any_data_arrives() {
    let limits = Limits {
        max_bulk_len: 10,
        max_args: 3,
    };
    let (_, err) = parse_all(b"*1\r\n$11\r\n", limits);
    assert_eq!(err, Some(ProtocolError::InvalidBulkLength));
    let (_, err) = parse_all(b"*4\r\n", limits);
    assert_eq!(err, Some(ProtocolError::InvalidMultibulkLength));
    let (commands, err) = parse_all(b"*3\r\n$10\r\n0123456789\r\n$0\r\n\r\n$1\r\nx\r\n", limits);
    assert_eq!(err, None);
    assert_eq!(commands.len(), 1);
}

#[test]
fn a_huge_declared_count_allocates_nothing_up_front() {
    let mut parser = RequestParser::new(Limits::default());
    let input = b"*2147483647\r\n$1\r\na\r\n";
    assert_eq!(
        parser.parse(input),
        Ok(Parsed::Incomplete { frame_len: None })
    );
    assert!(parser.ranges.capacity() <= 1024);
    assert!(parser.in_frame());
}

#[test]
fn unauthenticated_clients_get_small_frames_only() {
    let mut parser = RequestParser::new(Limits::default());
    parser.set_unauthenticated(true);
    assert_eq!(
        parser.parse(b"*11\r\n"),
        Err(ProtocolError::UnauthenticatedMultibulkLength)
    );
    assert_eq!(
        parser.parse(b"*1\r\n$16385\r\n"),
        Err(ProtocolError::UnauthenticatedBulkLength)
    );
    parser.set_unauthenticated(false);
    assert_eq!(
        parser.parse(b"*11\r\n"),
        Ok(Parsed::Incomplete { frame_len: None })
    );
}

#[test]
fn overlong_lines_are_refused() {
    let long = vec![b'a'; MAX_INLINE_LEN + 1];
    let (_, err) = parse_all(&long, Limits::default());
    assert_eq!(err, Some(ProtocolError::TooBigInline));
    let mut mbulk = b"*1".to_vec();
    mbulk.extend(std::iter::repeat_n(b'1', MAX_INLINE_LEN));
    let (_, err) = parse_all(&mbulk, Limits::default());
    assert_eq!(err, Some(ProtocolError::TooBigMultibulkCount));
    let mut bulk = b"*1\r\n$".to_vec();
    bulk.extend(std::iter::repeat_n(b'1', MAX_INLINE_LEN + 1));
    let (_, err) = parse_all(&bulk, Limits::default());
    assert_eq!(err, Some(ProtocolError::TooBigBulkCount));
}

#[test]
fn a_line_arriving_byte_by_byte_is_scanned_once() {
    // Without remembering how far the search for the line end got, a 60 KB line sent one byte
    // per read would cost 1.8 billion comparisons.
    for (line, expected) in [
        (
            [b"*".as_slice(), &[b'1'; 60_000][..]].concat(),
            Err(ProtocolError::InvalidMultibulkLength),
        ),
        (
            [b"*1\r\n$".as_slice(), &[b'1'; 60_000][..]].concat(),
            Err(ProtocolError::InvalidBulkLength),
        ),
        ([b"ECHO ".as_slice(), &[b'x'; 60_000][..]].concat(), Ok(2)),
    ] {
        let mut parser = RequestParser::new(Limits::default());
        let mut buf = Vec::new();
        for &byte in &line {
            buf.push(byte);
            assert_eq!(
                parser.parse(&buf),
                Ok(Parsed::Incomplete { frame_len: None })
            );
            if buf.len() > 10 {
                assert!(parser.scanned >= buf.len() - 1, "the search restarted");
            }
        }
        buf.extend_from_slice(b"\r\n");
        let outcome = parser.parse(&buf).map(|_| parser.argv(&buf).len());
        assert_eq!(outcome, expected);
        assert_eq!(parser.scanned, 0);
    }
}

#[test]
fn big_bulks_announce_their_frame_length() {
    let mut parser = RequestParser::new(Limits::default());
    let header = b"*2\r\n$3\r\nSET\r\n$100000\r\nab";
    assert_eq!(
        parser.parse(header),
        Ok(Parsed::Incomplete {
            frame_len: Some(13 + 9 + 100_000 + 2)
        })
    );
}

#[test]
fn peek_key_finds_the_next_commands_key() {
    let frame = b"*3\r\n$3\r\nSET\r\n$5\r\nmykey\r\n$1\r\nv\r\n";
    assert_eq!(peek_key(frame), Some(&b"mykey"[..]));
    assert_eq!(
        peek_key(&frame[..22]),
        Some(&b"mykey"[..]),
        "the key is there before the value"
    );
    assert_eq!(peek_key(&frame[..21]), None, "the key is not complete yet");
    assert_eq!(peek_key(b"*1\r\n$4\r\nPING\r\n"), None);
    assert_eq!(peek_key(b"GET inline\r\n"), None);
    assert_eq!(peek_key(b"*2\r\n$3\r\nGET\r\n$-1\r\n"), None);
}

#[test]
fn every_split_point_of_a_pipeline_parses_the_same() {
    let mut input = Vec::new();
    input.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$5\r\nmykey\r\n$10\r\n0123\r\n6789\r\n");
    input.extend_from_slice(b"GET \"my key\"\r\n");
    input.extend_from_slice(b"*0\r\n");
    input.extend_from_slice(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n");
    let whole = parse_in_chunks(&input, &[]);
    assert_eq!(whole.len(), 3);
    for cut in 0..=input.len() {
        assert_eq!(parse_in_chunks(&input, &[cut]), whole, "cut at {cut}");
    }
    let every_byte: Vec<usize> = (0..input.len()).collect();
    assert_eq!(parse_in_chunks(&input, &every_byte), whole);
}

#[test]
fn ten_thousand_pipelined_commands_parse_in_order() {
    let mut input = Vec::new();
    for i in 0..10_000 {
        input.extend(encode(&[
            b"SET".to_vec(),
            format!("k{i}").into_bytes(),
            vec![b'v'; i % 50],
        ]));
    }
    let (commands, err) = parse_all(&input, Limits::default());
    assert_eq!(err, None);
    assert_eq!(commands.len(), 10_000);
    assert_eq!(commands[9_999][1], b"k9999");
    assert_eq!(commands[49][2].len(), 49);
}

fn arb_command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trips_survive_any_chunking(
        commands in prop::collection::vec(arb_command(), 1..8),
        cuts in prop::collection::vec(0usize..2000, 0..12),
    ) {
        let input: Vec<u8> = commands.iter().flat_map(|c| encode(c)).collect();
        prop_assert_eq!(parse_in_chunks(&input, &cuts), commands);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_all(&input, Limits { max_bulk_len: 1 << 20, max_args: 1 << 16 });
    }

    #[test]
    fn mutated_frames_never_panic(
        command in arb_command(),
        flips in prop::collection::vec((0usize..400, any::<u8>()), 1..4),
    ) {
        let mut input = encode(&command);
        for (at, byte) in flips {
            let at = at % input.len();
            input[at] = byte;
        }
        let _ = parse_all(&input, Limits::default());
    }
}

#[test]
fn lines_split_into_arguments_as_sdssplitargs() {
    let args = super::split_args(b" ~a*  \"+g\\x65t\" 'x y' ").unwrap();
    assert_eq!(args, [&b"~a*"[..], b"+get", b"x y"]);
    assert_eq!(super::split_args(b"\"open"), None);
    assert_eq!(super::split_args(b"\"a\"b"), None);
    assert_eq!(super::split_args(b"   ").unwrap(), Vec::<Vec<u8>>::new());
}
