//! [`Stream`]: a client's connection, plain TCP or TLS, with the few operations the session
//! loop needs. The plain case calls the socket directly (one branch more than before); the TLS
//! case goes through rustls's buffers.
//!
//! With TLS, bytes handed to [`Stream::try_write`] may stay encrypted in rustls's buffer when
//! the socket is full: [`Stream::writable`] waits until they are out, and [`Stream::read_buf`]
//! sends them before it waits for input, so a reply never sits unsent while the session waits
//! for the next request.

use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf, Ready};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A client's connection.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Polls `future` once, without waiting: `WouldBlock` if it is not ready.
fn now<T>(future: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
    }
}

impl Stream {
    /// Waits for input and appends it to `buf` (0 at the end of the stream). With TLS, output
    /// still in rustls's buffer is sent first.
    #[inline]
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read_buf(buf).await,
            Stream::Tls(tls) => {
                tls.flush().await?;
                tls.read_buf(buf).await
            }
        }
    }

    /// Appends the input that is there already to `buf`, without waiting (`WouldBlock` if
    /// there is none).
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.try_read_buf(buf),
            Stream::Tls(tls) => now(tls.read_buf(buf)),
        }
    }

    /// Writes what it can of `bytes` without waiting (`WouldBlock` if nothing).
    #[inline]
    pub fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.try_write(bytes),
            Stream::Tls(tls) => {
                let n = now(tls.write(bytes))?;
                // What rustls encrypted goes to the socket now if it takes it; the rest waits
                // for `writable` or the next read.
                match now(tls.flush()) {
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => Err(e),
                    _ => Ok(n),
                }
            }
        }
    }

    /// Waits until more output can be written (with TLS: until rustls's buffer is sent).
    pub async fn writable(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.writable().await,
            Stream::Tls(tls) => tls.flush().await,
        }
    }

    /// Waits until the connection is ready for one of `interest` (with TLS, input rustls has
    /// decrypted already counts as readable).
    pub async fn ready(&mut self, interest: Interest) -> std::io::Result<Ready> {
        match self {
            Stream::Plain(tcp) => tcp.ready(interest).await,
            Stream::Tls(tls) => {
                let (tcp, session) = tls.get_mut();
                let buffered = session
                    .process_new_packets()
                    .map_err(std::io::Error::other)?
                    .plaintext_bytes_to_read();
                if buffered > 0 && interest.is_readable() {
                    return Ok(Ready::READABLE);
                }
                tcp.ready(interest).await
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}
