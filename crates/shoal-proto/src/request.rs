//! Requests encoded as RESP multibulk frames (an array of bulk strings), as clients send
//! them: the one encoder of commands that the client, the proxy, replication and the tests
//! share.

/// Bytes of the frame of `args`.
pub fn encoded_len<A: AsRef<[u8]>>(args: &[A]) -> usize {
    let header = |n: usize| 1 + decimal_len(n) + 2;
    header(args.len())
        + args
            .iter()
            .map(|a| header(a.as_ref().len()) + a.as_ref().len() + 2)
            .sum::<usize>()
}

/// Appends the multibulk frame of `args` to `out`.
pub fn encode_into<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.reserve(encoded_len(args));
    let mut num = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(num.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.push(b'$');
        out.extend_from_slice(num.format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The multibulk frame of `args`, in one allocation of exactly its size.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(args));
    encode_into(&mut out, args);
    out
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Parsed, RequestParser};

    #[test]
    fn frames_are_redis_multibulk() {
        let args = [&b"SET"[..], b"k", b"", &[b'x'; 12]];
        let frame = encode(&args);
        assert_eq!(
            frame,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$12\r\nxxxxxxxxxxxx\r\n"
        );
        assert_eq!(frame.len(), encoded_len(&args));
        assert_eq!(
            frame.capacity(),
            frame.len(),
            "one allocation of the exact size"
        );
        let mut out = Vec::new();
        encode_into::<&[u8]>(&mut out, &[]);
        assert_eq!(out, b"*0\r\n");
    }

    #[test]
    fn frames_parse_back() {
        let args: Vec<Vec<u8>> = (0..200).map(|i| vec![b'a'; i]).collect();
        let frame = encode(&args);
        assert_eq!(frame.len(), encoded_len(&args));
        let mut parser = RequestParser::new(Limits::default());
        match parser.parse(&frame) {
            Ok(Parsed::Command { consumed }) => assert_eq!(consumed, frame.len()),
            other => panic!("{other:?}"),
        }
        let argv = parser.argv(&frame);
        assert_eq!(argv.len(), 200);
        assert!(argv.iter().zip(&args).all(|(a, b)| a == &b[..]));
    }
}
