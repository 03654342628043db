//! The WebSocket side: connect, wait for `connection_established`, and
//! read the few fields of server events the benchmark needs.

use crate::Result;
use futures_util::StreamExt;
use serde::Deserialize;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the upgrade plus the first frame may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a socket connects from and to: binding each socket to one of
/// several loopback source addresses keeps the kernel's ephemeral port
/// search short when tens of thousands of sockets are open.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub local: IpAddr,
    pub server: SocketAddr,
}

/// What `connection_established` says about the stream position (user
/// streams only; `None` on a conversation socket).
#[derive(Debug, Clone, Copy, Default)]
pub struct Established {
    pub seq: Option<i64>,
    pub recovered: Option<bool>,
}

/// Connects and waits for `connection_established`. `small` shrinks the
/// client's buffers (many idle sockets); otherwise tungstenite's defaults.
pub async fn connect(url: &str, small: bool, route: Option<Route>) -> Result<Ws> {
    Ok(connect_established(url, small, route).await?.0)
}

/// [`connect`], also returning what `connection_established` said.
pub async fn connect_established(
    url: &str,
    small: bool,
    route: Option<Route>,
) -> Result<(Ws, Established)> {
    let config = if small {
        WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
    } else {
        WebSocketConfig::default()
    };
    let handshake = async {
        let mut ws = match route {
            None => {
                tokio_tungstenite::connect_async_with_config(url, Some(config), true)
                    .await?
                    .0
            }
            Some(route) => {
                let socket = match route.local {
                    IpAddr::V4(_) => TcpSocket::new_v4()?,
                    IpAddr::V6(_) => TcpSocket::new_v6()?,
                };
                socket.bind(SocketAddr::new(route.local, 0))?;
                let stream = socket.connect(route.server).await?;
                stream.set_nodelay(true)?;
                tokio_tungstenite::client_async_with_config(
                    url,
                    MaybeTlsStream::Plain(stream),
                    Some(config),
                )
                .await?
                .0
            }
        };
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let event: Event<'_> = serde_json::from_str(text.as_str())?;
                    if event.kind == "connection_established" {
                        let established = Established {
                            seq: event.seq,
                            recovered: event.recovered,
                        };
                        return Ok((ws, established));
                    }
                    return Err(
                        format!("first frame was not connection_established: {text}").into(),
                    );
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!("closed during handshake: {frame:?}").into());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err("socket ended during handshake".into()),
            }
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(result) => result,
        Err(_) => Err("websocket handshake timed out".into()),
    }
}

/// The fields of a server event the benchmark reads.
#[derive(Debug, Deserialize)]
pub struct Event<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default)]
    pub sender_id: Option<i64>,
    #[serde(default)]
    pub message_id: Option<i64>,
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
    /// The user's seq (user streams: durable events and `connection_established`).
    #[serde(default)]
    pub seq: Option<i64>,
    /// `connection_established` on a user stream opened with `since`.
    #[serde(default)]
    pub recovered: Option<bool>,
}

/// What the benchmark puts in a message: its sequence number in its
/// sender's stream, the scheduled send time and the actual send time
/// (nanoseconds since the tool's epoch; equal in closed-loop runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub scheduled_ns: u64,
    pub sent_ns: u64,
}

impl Stamp {
    /// The message content.
    pub fn content(&self) -> String {
        format!("bench {} {} {}", self.seq, self.scheduled_ns, self.sent_ns)
    }

    /// The client event frame (with `client_id` = the sequence number).
    pub fn frame(&self) -> String {
        format!(
            r#"{{"type":"chat_message","content":"{}","client_id":"s{}"}}"#,
            self.content(),
            self.seq
        )
    }

    /// Reads a stamp back from a message content.
    pub fn parse(content: &str) -> Option<Self> {
        let mut parts = content.strip_prefix("bench ")?.split(' ');
        let seq = parts.next()?.parse().ok()?;
        let scheduled_ns = parts.next()?.parse().ok()?;
        let sent_ns = parts.next()?.parse().ok()?;
        Some(Self {
            seq,
            scheduled_ns,
            sent_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_through_an_event() -> Result<()> {
        let s = Stamp {
            seq: 42,
            scheduled_ns: 1_000,
            sent_ns: 1_500,
        };
        let frame: serde_json::Value = serde_json::from_str(&s.frame())?;
        assert_eq!(frame["client_id"], "s42");
        let event = format!(
            r#"{{"type":"chat_message","message_id":1,"sender_id":7,"content":"{}","client_id":"s42"}}"#,
            s.content()
        );
        let e: Event<'_> = serde_json::from_str(&event)?;
        assert_eq!(e.kind, "chat_message");
        assert_eq!(e.sender_id, Some(7));
        assert_eq!(e.content.as_deref().and_then(Stamp::parse), Some(s));
        assert_eq!(Stamp::parse("hello"), None);
        Ok(())
    }
}
