//! Requests as the client sends them: [`shoal_proto::request`]'s frames, as shared bytes.

use bytes::Bytes;

/// `ASKING`, sent before a command redirected by `-ASK`.
pub(crate) const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// The multibulk frame of `args`, in one allocation of exactly its size.
pub(crate) fn encode<A: AsRef<[u8]>>(args: &[A]) -> Bytes {
    Bytes::from(shoal_proto::request::encode(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_is_its_frame() {
        assert_eq!(&encode(&["ASKING"])[..], ASKING);
    }
}
