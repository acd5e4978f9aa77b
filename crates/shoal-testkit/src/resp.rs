//! A minimal RESP2 client: enough to ask a node `PING` or `CLUSTER MYID`, or to see its raw
//! replies (`-MOVED ...`, `-CROSSSLOT ...`) without a client library interpreting them.

use std::time::Duration;

pub use shoal_proto::reply::Value;
use shoal_proto::reply::decode;
use shoal_proto::request::encode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Largest reply accepted.
const MAX_REPLY: usize = 64 << 20;

/// One connection to a node's RESP port.
pub struct RespConnection {
    addr: String,
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl RespConnection {
    /// Connects to `addr`; `timeout` bounds connecting and every later exchange.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<RespConnection> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| resp_error(addr, format!("no connection within {timeout:?}")))?
            .map_err(|e| resp_error(addr, e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(RespConnection {
            addr: addr.to_string(),
            stream,
            buf: Vec::with_capacity(4096),
            timeout,
        })
    }

    /// Connects to `addr` and authenticates with `password` if one is given (see
    /// [`RespConnection::connect`]).
    pub async fn connect_as(
        addr: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<RespConnection> {
        let mut conn = RespConnection::connect(addr, timeout).await?;
        if let Some(password) = password {
            match conn.call(&["AUTH", password]).await? {
                Value::Simple(ok) if ok == b"OK" => {}
                other => {
                    return Err(resp_error(addr, format!("AUTH answered {other:?}")));
                }
            }
        }
        Ok(conn)
    }

    /// Sends one command and returns its reply (an error reply is a [`Value::Error`], not an
    /// `Err`).
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value> {
        let request = encode(args);
        let addr = self.addr.clone();
        let timeout = self.timeout;
        let exchange = async {
            self.stream
                .write_all(&request)
                .await
                .map_err(|e| resp_error(&addr, e.to_string()))?;
            self.read_reply().await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| resp_error(&self.addr, format!("no reply within {timeout:?}")))?
    }

    /// Writes `frames` (several commands, encoded) in one write and reads `replies` replies,
    /// in order: a pipeline.
    pub async fn pipeline(&mut self, frames: &[u8], replies: usize) -> Result<Vec<Value>> {
        let addr = self.addr.clone();
        let timeout = self.timeout;
        let exchange = async {
            self.stream
                .write_all(frames)
                .await
                .map_err(|e| resp_error(&addr, e.to_string()))?;
            let mut out = Vec::with_capacity(replies);
            for _ in 0..replies {
                out.push(self.read_reply().await?);
            }
            Ok(out)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| resp_error(&self.addr, format!("no replies within {timeout:?}")))?
    }

    /// Sends one command and returns the bytes of its reply as the node sent them.
    pub async fn raw_reply<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Vec<u8>> {
        let before = self.buf.len();
        debug_assert_eq!(before, 0, "no reply may be pending");
        let request = encode(args);
        let addr = self.addr.clone();
        let timeout = self.timeout;
        let exchange = async {
            self.stream
                .write_all(&request)
                .await
                .map_err(|e| resp_error(&addr, e.to_string()))?;
            loop {
                match decode(&self.buf) {
                    Ok(Some((_, used))) => return Ok(self.buf.drain(..used).collect()),
                    Ok(None) => {}
                    Err(e) => return Err(resp_error(&addr, e.to_string())),
                }
                let n = self
                    .stream
                    .read_buf(&mut self.buf)
                    .await
                    .map_err(|e| resp_error(&addr, e.to_string()))?;
                if n == 0 {
                    return Err(resp_error(&addr, "closed the connection".into()));
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| resp_error(&self.addr, format!("no reply within {timeout:?}")))?
    }

    async fn read_reply(&mut self) -> Result<Value> {
        loop {
            match decode(&self.buf) {
                Ok(Some((value, used))) => {
                    self.buf.drain(..used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(e) => return Err(resp_error(&self.addr, e.to_string())),
            }
            if self.buf.len() > MAX_REPLY {
                return Err(resp_error(&self.addr, "reply too large".into()));
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| resp_error(&self.addr, e.to_string()))?;
            if n == 0 {
                return Err(resp_error(&self.addr, "closed the connection".into()));
            }
        }
    }
}

/// Connects to `addr`, sends one command, returns its reply.
pub async fn command<A: AsRef<[u8]>>(addr: &str, args: &[A], timeout: Duration) -> Result<Value> {
    command_as(addr, None, args, timeout).await
}

/// [`command`], authenticated with `password` first if one is given.
pub async fn command_as<A: AsRef<[u8]>>(
    addr: &str,
    password: Option<&str>,
    args: &[A],
    timeout: Duration,
) -> Result<Value> {
    RespConnection::connect_as(addr, password, timeout)
        .await?
        .call(args)
        .await
}

/// The text of a bulk, simple, verbatim or error reply.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::Simple(b)
        | Value::Bulk(b)
        | Value::Error(b)
        | Value::BulkError(b)
        | Value::Verbatim(_, b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn resp_error(addr: &str, reason: String) -> Error {
    Error::Resp {
        addr: addr.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&["CLUSTER", "MYID"]),
            b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nMYID\r\n"
        );
        assert_eq!(encode::<&[u8]>(&[b""]), b"*1\r\n$0\r\n\r\n");
    }

    #[test]
    fn text_reads_string_like_replies() {
        assert_eq!(
            text(&Value::Simple(b"PONG".to_vec())).as_deref(),
            Some("PONG")
        );
        assert_eq!(
            text(&Value::Error(b"MOVED 1 a:1".to_vec())).as_deref(),
            Some("MOVED 1 a:1")
        );
        assert_eq!(text(&Value::Int(3)), None);
    }

    /// A one-connection server that answers each request with the next canned reply, in
    /// pieces, to exercise reassembly.
    async fn canned_server(replies: &'static [&'static [u8]]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            for reply in replies {
                let _ = stream.read(&mut buf).await.unwrap();
                let (a, b) = reply.split_at(reply.len() / 2);
                stream.write_all(a).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                stream.write_all(b).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn replies_split_across_reads_are_reassembled() {
        let addr = canned_server(&[b"+PONG\r\n", b"$5\r\nhello\r\n", b"-MOVED 5 x:1\r\n"]).await;
        let mut conn = RespConnection::connect(&addr, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(
            conn.call(&["PING"]).await.unwrap(),
            Value::Simple(b"PONG".to_vec())
        );
        assert_eq!(
            conn.call(&["GET", "k"]).await.unwrap(),
            Value::Bulk(b"hello".to_vec())
        );
        assert_eq!(
            conn.call(&["GET", "j"]).await.unwrap(),
            Value::Error(b"MOVED 5 x:1".to_vec())
        );
        let closed = conn.call(&["PING"]).await.unwrap_err();
        assert!(closed.to_string().contains("closed"), "{closed}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let err = command(&addr, &["PING"], Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no reply"), "{err}");
        drop(listener);
    }
}
