//! A WebSocket client written on a bare TCP stream, for what a well-behaved
//! client library refuses to send: frame headers announcing more than is
//! sent, fragments, invalid UTF-8.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Text, binary, continuation, close, ping.
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// A raw socket after the upgrade.
pub struct RawWs {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades `path` (with its query) on `addr`; panics unless 101.
    pub async fn open(addr: std::net::SocketAddr, path: &str) -> RawWs {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Self::upgrade(tcp, addr, path).await
    }

    /// [`RawWs::open`] with a small receive buffer, for a client that
    /// stops reading and should stall the server quickly.
    pub async fn open_with_recv_buffer(
        addr: std::net::SocketAddr,
        path: &str,
        bytes: u32,
    ) -> RawWs {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("connect");
        Self::upgrade(tcp, addr, path).await
    }

    async fn upgrade(mut tcp: TcpStream, addr: std::net::SocketAddr, path: &str) -> RawWs {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("handshake");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
                .await
                .expect("handshake answer in time")
                .expect("read");
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let (reader, writer) = tcp.into_split();
        RawWs {
            reader,
            writer,
            buf: buf[end..].to_vec(),
        }
    }

    /// Writes a frame header (masked, as clients must) announcing `len`
    /// payload bytes; returns the mask to apply to the payload.
    pub async fn header(&mut self, fin: bool, opcode: u8, len: u64) -> [u8; 4] {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= u64::from(u16::MAX) {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        h.extend_from_slice(&mask);
        self.writer.write_all(&h).await.expect("write header");
        mask
    }

    /// Writes payload bytes, masked from `offset` within their frame.
    pub async fn payload(
        &mut self,
        mask: [u8; 4],
        offset: usize,
        data: &[u8],
    ) -> std::io::Result<()> {
        let masked: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[(offset + i) % 4])
            .collect();
        self.writer.write_all(&masked).await
    }

    /// A whole frame (a write the server cut short is not an error: it
    /// may close while a large payload is on its way).
    pub async fn frame(&mut self, fin: bool, opcode: u8, data: &[u8]) {
        let mask = self.header(fin, opcode, data.len() as u64).await;
        let _ = self.payload(mask, 0, data).await;
    }

    /// Sends `chunk`-byte pieces of a payload announced with `mask` every
    /// `every` until the server closes; returns the close code (0 when the
    /// connection ended without one).
    pub async fn trickle_until_closed(
        &mut self,
        mask: [u8; 4],
        chunk: usize,
        every: Duration,
    ) -> u16 {
        let data = vec![b'x'; chunk];
        let mut offset = 0;
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                frame = read_frame_from(&mut self.reader, &mut self.buf) => match frame {
                    None => return 0,
                    Some((CLOSE, payload)) if payload.len() >= 2 => {
                        return u16::from_be_bytes([payload[0], payload[1]]);
                    }
                    Some((CLOSE, _)) => return 1005,
                    Some(_) => {}
                },
                _ = tick.tick() => {
                    let masked: Vec<u8> = data
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ mask[(offset + i) % 4])
                        .collect();
                    offset += chunk;
                    let _ = self.writer.write_all(&masked).await;
                }
            }
        }
    }

    /// The next frame from the server: (opcode, payload); `None` when the
    /// connection ended.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        read_frame_from(&mut self.reader, &mut self.buf).await
    }

    /// Reads until a close frame; its code (1005 for none, 0 when the
    /// connection ended without one). Text frames before it are skipped.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            match self.read_frame().await {
                None => return 0,
                Some((CLOSE, payload)) if payload.len() >= 2 => {
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
                Some((CLOSE, _)) => return 1005,
                Some(_) => continue,
            }
        }
    }

    /// The next text frame as JSON.
    pub async fn next_json(&mut self) -> serde_json::Value {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.read_frame())
                .await
                .expect("a frame in time")
            {
                Some((TEXT, payload)) => {
                    return serde_json::from_slice(&payload).expect("JSON text frame");
                }
                Some((CLOSE, payload)) => panic!("closed: {payload:?}"),
                Some(_) => continue,
                None => panic!("connection ended"),
            }
        }
    }
}

/// Reads one server frame (cancel-safe: bytes read stay in `buf`).
async fn read_frame_from(reader: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    loop {
        if let Some((frame, used)) = parse(buf) {
            buf.drain(..used);
            return Some(frame);
        }
        let mut chunk = vec![0u8; 65536];
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One unmasked server frame at the start of `buf`, and its length.
fn parse(buf: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, start) = match buf[1] & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    let end = start + len;
    if buf.len() < end {
        return None;
    }
    Some(((opcode, buf[start..end].to_vec()), end))
}
