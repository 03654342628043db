//! Reading a socket's client frames with the size limit enforced from each
//! frame's header.
//!
//! actix-http's WebSocket codec checks a frame against its maximum size
//! only once the whole frame has arrived, and actix-ws's message stream
//! keeps reading everything the connection delivers into its buffer
//! meanwhile: a header announcing 2^62 bytes would be waited for (and
//! buffered) for ever. [`guard`] therefore sits between the request
//! payload and actix-ws: it follows the frame boundaries as the bytes pass
//! (headers only; payloads are counted, not copied) and fails the payload
//! the moment a header announces a frame, or a fragmented message, larger
//! than the limit. [`Frames`] then joins fragments itself (actix-ws's
//! aggregation reports an oversized or invalid message as an I/O error of
//! no particular kind), so each refusal gets its close code: 1009 too
//! large, 1007 invalid UTF-8, 1002 any other protocol error.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::{Bytes, BytesMut};
use actix_ws::{CloseCode, Item, Message, MessageStream, ProtocolError};
use bytestring::ByteString;
use futures_util::Stream;
use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Why a socket's input was refused; each has its close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A frame or message above the limit (1009).
    TooLarge,
    /// A text message that is not UTF-8 (1007).
    InvalidUtf8,
    /// Any other violation of RFC 6455 (1002).
    Protocol,
}

impl Refused {
    /// The close code to send.
    pub(crate) fn close_code(self) -> CloseCode {
        match self {
            Self::TooLarge => CloseCode::Size,
            Self::InvalidUtf8 => CloseCode::Invalid,
            Self::Protocol => CloseCode::Protocol,
        }
    }

    /// The close reason's text.
    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::TooLarge => "Frame too large.",
            Self::InvalidUtf8 => "Text frames must be UTF-8.",
            Self::Protocol => "WebSocket protocol error.",
        }
    }
}

/// Where [`Guard`] leaves its verdict for [`Frames`] (one socket, one
/// thread: the payload and the socket task run on the same worker).
type Verdict = Rc<Cell<Option<Refused>>>;

/// Wraps the request payload so that frames above `limit` fail it from
/// their header; the returned payload goes to `actix_ws::handle`.
pub(crate) fn guard(payload: Payload, limit: usize) -> (Payload, Verdict) {
    let verdict = Verdict::default();
    let guard = Guard {
        inner: payload,
        scan: Scan::new(limit),
        verdict: verdict.clone(),
        failed: false,
    };
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(guard);
    (Payload::from(boxed), verdict)
}

struct Guard {
    inner: Payload,
    scan: Scan,
    verdict: Verdict,
    failed: bool,
}

impl Stream for Guard {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => match this.scan.feed(&bytes) {
                Ok(()) => Poll::Ready(Some(Ok(bytes))),
                Err(refused) => {
                    this.failed = true;
                    this.verdict.set(Some(refused));
                    // Nothing more is read: the socket closes with 1009.
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            },
            other => other,
        }
    }
}

/// Follows frame boundaries through the byte stream (RFC 6455 §5.2).
#[derive(Debug)]
struct Scan {
    limit: u64,
    /// The header being read, and how much of it has arrived.
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    remaining: u64,
    /// Bytes of the data message being received so far (fragments summed).
    message: u64,
}

impl Scan {
    fn new(limit: usize) -> Self {
        Self {
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
            header: [0; 14],
            have: 0,
            remaining: 0,
            message: 0,
        }
    }

    /// The header's length once its first two bytes are known.
    fn header_len(&self) -> usize {
        let extended = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), Refused> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining).map_or(data.len(), |r| r.min(data.len()));
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            self.header[self.have] = data[0];
            self.have += 1;
            data = &data[1..];
            if self.have >= 2 && self.have == self.header_len() {
                self.frame_announced()?;
            }
        }
        Ok(())
    }

    /// A whole header has arrived: judge the frame it announces.
    fn frame_announced(&mut self) -> Result<(), Refused> {
        let length = match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(be)
            }
            n => u64::from(n),
        };
        self.have = 0;
        self.remaining = length;
        if length > self.limit {
            return Err(Refused::TooLarge);
        }
        let fin = self.header[0] & 0x80 != 0;
        match self.header[0] & 0x0f {
            // A continuation adds to the message; text or binary starts one.
            0 => self.message = self.message.saturating_add(length),
            1 | 2 => self.message = length,
            // Control frames stand alone (the codec checks their size).
            _ => return Ok(()),
        }
        if self.message > self.limit {
            return Err(Refused::TooLarge);
        }
        if fin {
            self.message = 0;
        }
        Ok(())
    }
}

/// A client frame, with fragments joined.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A whole text message.
    Text(ByteString),
    /// A binary message (refused with an `error` event).
    Binary,
    /// A ping to answer.
    Ping(Bytes),
    /// A pong (the client is alive).
    Pong,
    /// The client closes.
    Close,
}

/// The frames of a socket, read through [`guard`].
pub(crate) struct Frames {
    stream: MessageStream,
    verdict: Verdict,
    limit: usize,
    /// The fragments of a message being received: text or binary, and its bytes.
    partial: Option<(bool, BytesMut)>,
}

impl std::fmt::Debug for Frames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Frames {
    /// Reads `stream` (from `actix_ws::handle` on the guarded payload).
    pub(crate) fn new(stream: MessageStream, verdict: Verdict, limit: usize) -> Self {
        Self {
            stream: stream.max_frame_size(limit),
            verdict,
            limit,
            partial: None,
        }
    }

    /// The next frame; `None` once the connection has ended; a refusal
    /// ends the socket.
    pub(crate) async fn recv(&mut self) -> Option<Result<Incoming, Refused>> {
        loop {
            let message = match self.stream.recv().await? {
                Ok(message) => message,
                Err(e) => return Some(Err(self.refusal(&e))),
            };
            let item = match message {
                Message::Text(text) => Incoming::Text(text),
                Message::Binary(_) => Incoming::Binary,
                Message::Ping(bytes) => Incoming::Ping(bytes),
                Message::Pong(_) => Incoming::Pong,
                Message::Close(_) => Incoming::Close,
                Message::Nop => continue,
                Message::Continuation(item) => match self.fragment(item) {
                    Ok(Some(item)) => item,
                    Ok(None) => continue,
                    Err(refused) => return Some(Err(refused)),
                },
            };
            return Some(Ok(item));
        }
    }

    fn fragment(&mut self, item: Item) -> Result<Option<Incoming>, Refused> {
        let (bytes, last) = match item {
            Item::FirstText(b) => {
                self.partial = Some((true, BytesMut::new()));
                (b, false)
            }
            Item::FirstBinary(b) => {
                self.partial = Some((false, BytesMut::new()));
                (b, false)
            }
            Item::Continue(b) => (b, false),
            Item::Last(b) => (b, true),
        };
        let Some((_, joined)) = self.partial.as_mut() else {
            return Err(Refused::Protocol);
        };
        // The guard refuses this from the headers already; kept as a bound.
        if joined.len() + bytes.len() > self.limit {
            self.partial = None;
            return Err(Refused::TooLarge);
        }
        joined.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        let Some((text, joined)) = self.partial.take() else {
            return Err(Refused::Protocol);
        };
        if !text {
            return Ok(Some(Incoming::Binary));
        }
        ByteString::try_from(joined.freeze())
            .map(|t| Some(Incoming::Text(t)))
            .map_err(|_| Refused::InvalidUtf8)
    }

    /// What a stream error means: the guard's verdict, a frame over the
    /// codec's limit, invalid UTF-8 in a text frame, or anything else.
    fn refusal(&self, e: &ProtocolError) -> Refused {
        if let Some(refused) = self.verdict.get() {
            return refused;
        }
        match e {
            ProtocolError::Overflow => Refused::TooLarge,
            ProtocolError::Io(io)
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<std::str::Utf8Error>()) =>
            {
                Refused::InvalidUtf8
            }
            other => {
                tracing::debug!(error = %other, "websocket protocol error");
                Refused::Protocol
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= 0xffff {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn frames_within_the_limit_pass_byte_by_byte_or_at_once() {
        let mut bytes = header(true, 1, 5);
        bytes.extend_from_slice(b"hello");
        bytes.extend(header(true, 9, 0));
        bytes.extend(header(false, 1, 60));
        bytes.extend_from_slice(&[0; 60]);
        bytes.extend(header(true, 0, 40));
        bytes.extend_from_slice(&[0; 40]);
        let mut whole = Scan::new(100);
        assert_eq!(whole.feed(&bytes), Ok(()));
        let mut split = Scan::new(100);
        for b in &bytes {
            assert_eq!(split.feed(std::slice::from_ref(b)), Ok(()));
        }
        assert_eq!((split.have, split.remaining, split.message), (0, 0, 0));
    }

    #[test]
    fn a_header_above_the_limit_is_refused_before_its_payload() {
        let mut scan = Scan::new(1 << 20);
        assert_eq!(scan.feed(&header(true, 1, 1 << 62)), Err(Refused::TooLarge));
        let mut scan = Scan::new(1 << 20);
        let h = header(true, 2, 200_000_000);
        assert_eq!(scan.feed(&h[..5]), Ok(()), "not yet a whole header");
        assert_eq!(scan.feed(&h[5..]), Err(Refused::TooLarge));
    }

    #[test]
    fn fragments_are_summed_and_control_frames_between_them_do_not_count() {
        let mut scan = Scan::new(100);
        let mut bytes = header(false, 1, 60);
        bytes.extend_from_slice(&[0; 60]);
        bytes.extend(header(true, 9, 4));
        bytes.extend_from_slice(&[0; 4]);
        assert_eq!(scan.feed(&bytes), Ok(()));
        assert_eq!(scan.feed(&header(false, 0, 41)), Err(Refused::TooLarge));
    }
}
