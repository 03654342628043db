//! Marking everything read sends `messages_read` in events of at most
//! 1,000 ids each (each with its own seq on the user streams, recorded in
//! the same transaction), so no event grows with the backlog.

use crate::support::*;
use crate::ws_support::*;
use chat_domain::{ConversationId, MessageContent, UserId};
use chat_persistence::messages;
use serde_json::Value;

const BACKLOG: usize = 2_345;

/// Stores `n` messages from `sender` directly (one transaction: the
/// backlog is the set-up, not what is tested).
async fn backlog(server: &TestServer, conv: i64, sender: i64, n: usize) {
    server
        .database
        .transaction(move |c| {
            let content = MessageContent::parse("unread").expect("content");
            for _ in 0..n {
                messages::send(c, ConversationId(conv), UserId(sender), &content, None)?;
            }
            Ok(())
        })
        .await
        .expect("backlog stored");
}

fn ids(event: &Value) -> Vec<i64> {
    event["message_ids"]
        .as_array()
        .expect("message_ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect()
}

/// Reads `messages_read` events until they hold `total` ids.
async fn read_events(ws: &mut Ws, total: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut seen = 0;
    while seen < total {
        let event = next_of(ws, "messages_read").await;
        seen += ids(&event).len();
        events.push(event);
    }
    events
}

#[tokio::test]
async fn marking_everything_read_sends_events_of_at_most_1000_ids() {
    let (server, api, ta, tb, conv, a, _) = pair_server().await;
    let base = server.ws_url("");
    backlog(&server, conv, a, BACKLOG).await;
    let mut conversation_socket = join(&base, conv, &ta).await;
    let (mut stream, _) = tokio_tungstenite::connect_async(format!("{base}/ws/chat/?token={tb}"))
        .await
        .expect("stream");
    let start = next(&mut stream).await;
    assert_eq!(start["total_unread"], BACKLOG as i64);
    let seq_before = start["seq"].as_i64().expect("seq");

    let path = format!("/api/chat/conversations/{conv}/mark_read/");
    let (status, body) = api.call("POST", &path, Some(&tb), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["marked"], BACKLOG as i64);

    let on_stream = read_events(&mut stream, BACKLOG).await;
    let on_socket = read_events(&mut conversation_socket, BACKLOG).await;
    for events in [&on_stream, &on_socket] {
        assert_eq!(
            events.len(),
            BACKLOG.div_ceil(1000),
            "{} events",
            events.len()
        );
        let mut all = Vec::new();
        for e in events.iter() {
            let chunk = ids(e);
            assert!(chunk.len() <= 1000, "{} ids in one event", chunk.len());
            all.extend(chunk);
        }
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(all, sorted, "ascending across the events");
        sorted.dedup();
        assert_eq!(sorted.len(), BACKLOG, "every id once");
        assert_eq!(
            events
                .iter()
                .map(|e| e["read_at"].to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            1,
            "one read, one read_at"
        );
    }
    // Each stream event has its own seq, one after the other; the counters
    // fall with each part and end at zero.
    for (i, e) in on_stream.iter().enumerate() {
        assert_eq!(e["seq"].as_i64(), Some(seq_before + 1 + i as i64), "{e}");
        assert_eq!(e["conversation_id"], conv);
    }
    let unread: Vec<i64> = on_stream
        .iter()
        .map(|e| e["total_unread"].as_i64().expect("total_unread"))
        .collect();
    assert!(unread.windows(2).all(|w| w[0] > w[1]), "{unread:?}");
    assert_eq!(unread.last(), Some(&0));
    assert_eq!(on_stream.last().expect("last")["unread_count"], 0);
    assert_eq!(on_stream.last().expect("last")["unread_conversations"], 0);

    // The parts are in the log: a replay gives the same events.
    let (mut replay, _) =
        tokio_tungstenite::connect_async(format!("{base}/ws/chat/?token={tb}&since={seq_before}"))
            .await
            .expect("replay");
    assert_eq!(next(&mut replay).await["recovered"], true);
    let replayed = read_events(&mut replay, BACKLOG).await;
    assert_eq!(replayed, on_stream);
}
