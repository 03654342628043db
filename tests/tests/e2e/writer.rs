//! The storage layer under the API: one crafted batch through the message
//! writer's batch function (PostgreSQL), and unique violations named as
//! constraints (both backends).

use chat_domain::{
    ClientId, ConnectionId, ConversationId, Message, MessageContent, SendDenied, UserId, Username,
};
use chat_persistence::messages::{self, SendOutcome};
use chat_persistence::schema::{connections, messages as messages_table};
use chat_persistence::users::{self, NewUser};
use chat_persistence::writer::store_batch_atomic;
use chat_persistence::{
    Constraint, Database, DbConnection, PersistenceError, PoolOptions, SendRequest,
    connections as conns, conversations,
};
use chat_tests::TestDb;
use diesel::prelude::*;

fn user(c: &mut DbConnection, name: &str) -> UserId {
    users::create(
        c,
        &NewUser {
            username: Username::parse(name).expect("name"),
            password_hash: "x".into(),
            first_name: name.into(),
            last_name: "Test".into(),
            avatar: None,
        },
    )
    .expect("create user")
    .id
}

/// Connects `a` and `b`; returns the connection and its conversation.
fn connect(c: &mut DbConnection, a: UserId, b: UserId) -> (ConnectionId, ConversationId) {
    let requested = conns::request(c, a, b)
        .expect("request")
        .expect("request allowed");
    let accepted = conns::accept(c, requested.id, b)
        .expect("accept")
        .expect("accept allowed");
    (
        accepted.id,
        accepted
            .conversation_id
            .expect("accepted has a conversation"),
    )
}

fn send(
    conversation: ConversationId,
    sender: UserId,
    text: &str,
    key: Option<&str>,
) -> SendRequest {
    SendRequest {
        conversation,
        sender,
        content: MessageContent::parse(text).expect("content"),
        client_id: key.map(|k| ClientId::parse(k).expect("client id")),
        attachments: vec![],
    }
}

fn stored(outcome: &SendOutcome) -> &Message {
    match outcome {
        SendOutcome::Stored(s) => &s.message,
        other => panic!("expected Stored, got {other:?}"),
    }
}

fn duplicate(outcome: &SendOutcome) -> &Message {
    match outcome {
        SendOutcome::Duplicate(m) => m,
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

fn denied(outcome: &SendOutcome) -> SendDenied {
    match outcome {
        SendOutcome::Denied(d) => *d,
        other => panic!("expected Denied, got {other:?}"),
    }
}

/// One batch holding every kind of send: allowed (with and without a key),
/// a stranger's, one into a removed connection, a retry of a stored
/// client_id and a retry of an earlier send of the same batch.
#[tokio::test]
async fn mixed_batch_answers_each_send_and_counts_only_stored_ones() {
    if chat_tests::pg_base_url().is_none() {
        return; // The batched path is PostgreSQL-only.
    }
    let tdb = TestDb::new().await;
    let db = Database::new(&tdb.url, &PoolOptions::default()).expect("pool");

    let (a, b, stranger, conv, closed, original) = db
        .run(|c| {
            let a = user(c, "alice");
            let b = user(c, "bob");
            let carol = user(c, "carol");
            let dave = user(c, "dave");
            let (_, conv) = connect(c, a, b);
            let (removed, closed) = connect(c, carol, dave);
            conns::remove(c, removed, dave)
                .expect("remove")
                .expect("remove allowed");
            let original = match messages::send(
                c,
                conv,
                a,
                &MessageContent::parse("first").expect("content"),
                Some(&ClientId::parse("k-old").expect("client id")),
            )? {
                SendOutcome::Stored(s) => s.message,
                other => panic!("setup send: {other:?}"),
            };
            Ok((a, b, carol, conv, closed, original))
        })
        .await
        .expect("setup");
    let before = db
        .run(move |c| conversations::find(c, conv))
        .await
        .expect("conversation");

    let requests = vec![
        send(conv, a, "hello", Some("k-new")),
        send(conv, stranger, "let me in", None),
        send(conv, a, "first, again", Some("k-old")),
        send(conv, b, "hi", Some("k-b")),
        send(conv, a, "hello, again", Some("k-new")),
        send(closed, stranger, "still there?", None),
        send(conv, b, "no key", None),
    ];
    let outcomes = db
        .run(move |c| store_batch_atomic(c, &requests))
        .await
        .expect("batch");
    assert_eq!(outcomes.len(), 7);

    let hello = stored(&outcomes[0]);
    assert_eq!((hello.sender_id, hello.content.as_str()), (a, "hello"));
    assert_eq!(hello.client_id.as_deref(), Some("k-new"));
    assert_eq!(denied(&outcomes[1]), SendDenied::NotParticipant);
    let retried = duplicate(&outcomes[2]);
    assert_eq!(retried.id, original.id);
    assert_eq!(retried.content, "first");
    let hi = stored(&outcomes[3]);
    assert_eq!((hi.sender_id, hi.content.as_str()), (b, "hi"));
    assert_eq!(duplicate(&outcomes[4]).id, hello.id);
    assert_eq!(duplicate(&outcomes[4]).content, "hello");
    assert_eq!(denied(&outcomes[5]), SendDenied::NotConnected);
    let no_key = stored(&outcomes[6]);
    assert_eq!((no_key.sender_id, no_key.content.as_str()), (b, "no key"));
    assert_eq!(no_key.client_id, None);
    // Ids follow request order.
    assert!(original.id < hello.id && hello.id < hi.id && hi.id < no_key.id);

    let (ids, after, after_closed) = db
        .run(move |c| {
            let ids: Vec<i64> = messages_table::table
                .filter(messages_table::conversation_id.eq_any([conv.0, closed.0]))
                .order(messages_table::id)
                .select(messages_table::id)
                .load(c)?;
            Ok((
                ids,
                conversations::find(c, conv)?,
                conversations::find(c, closed)?,
            ))
        })
        .await
        .expect("read back");
    assert_eq!(ids, [original.id.0, hello.id.0, hi.id.0, no_key.id.0]);
    assert_eq!(before.message_count, 1);
    assert_eq!(after.message_count, 4);
    assert_eq!(after.last_message_id, Some(no_key.id));
    let (unread_a, unread_b) = if a == after.user_low {
        (after.unread_for_low, after.unread_for_high)
    } else {
        (after.unread_for_high, after.unread_for_low)
    };
    assert_eq!((unread_a, unread_b), (2, 2), "{after:?}");
    // Each stored message is in both participants' streams, numbered on
    // from the setup send (seq 1 for a and b) in the order of the batch,
    // with positions following the conversation's count.
    let streamed: Vec<(i64, Vec<(i64, i64)>)> = [0usize, 3, 6]
        .iter()
        .map(|&i| match &outcomes[i] {
            SendOutcome::Stored(s) => (
                s.position,
                s.events.iter().map(|e| (e.user.0, e.seq)).collect(),
            ),
            other => panic!("expected stored: {other:?}"),
        })
        .collect();
    assert_eq!(
        streamed,
        vec![
            (2, vec![(a.0, 2), (b.0, 2)]),
            (3, vec![(b.0, 3), (a.0, 3)]),
            (4, vec![(b.0, 4), (a.0, 4)]),
        ]
    );
    if let SendOutcome::Stored(s) = &outcomes[3] {
        let to_a: serde_json::Value =
            serde_json::from_str(&s.events[1].payload).expect("event json");
        assert_eq!(to_a["type"], "chat_message");
        assert_eq!(to_a["seq"], 3);
        // a has b's "hi" unread: one unread message in one conversation.
        assert_eq!(
            (
                &to_a["unread_count"],
                &to_a["total_unread"],
                &to_a["unread_conversations"]
            ),
            (
                &serde_json::json!(1),
                &serde_json::json!(1),
                &serde_json::json!(1)
            )
        );
    }
    assert_eq!(after_closed.message_count, 0);
    assert_eq!(
        (after_closed.unread_for_low, after_closed.unread_for_high),
        (0, 0)
    );
}

/// Each backend reports a unique violation its own way (PostgreSQL by
/// constraint name, SQLite by column list); both become the same constraint.
#[tokio::test]
async fn unique_violations_name_their_constraint() {
    let tdb = TestDb::new().await;
    let db = Database::new(&tdb.url, &PoolOptions::default()).expect("pool");
    let conflicts = db
        .run(|c| {
            let a = user(c, "erin");
            let b = user(c, "frank");
            let taken = users::create(
                c,
                &NewUser {
                    username: Username::parse("ERIN").expect("name"),
                    password_hash: "x".into(),
                    first_name: "Erin".into(),
                    last_name: "Again".into(),
                    avatar: None,
                },
            )
            .map(|_| ());
            let (_, conv) = connect(c, a, b);
            let now = chrono::Utc::now().naive_utc();
            let (low, high) = (a.0.min(b.0), a.0.max(b.0));
            let open_pair = diesel::insert_into(connections::table)
                .values((
                    connections::requester_id.eq(a.0),
                    connections::addressee_id.eq(b.0),
                    connections::user_low.eq(low),
                    connections::user_high.eq(high),
                    connections::status.eq("pending"),
                    connections::created_at.eq(now),
                    connections::updated_at.eq(now),
                ))
                .execute(c)
                .map(|_| ())
                .map_err(PersistenceError::from);
            let mut message = || {
                diesel::insert_into(messages_table::table)
                    .values((
                        messages_table::conversation_id.eq(conv.0),
                        messages_table::sender_id.eq(a.0),
                        messages_table::content.eq("x"),
                        messages_table::client_id.eq("same"),
                        messages_table::created_at.eq(now),
                    ))
                    .execute(c)
                    .map(|_| ())
                    .map_err(PersistenceError::from)
            };
            message()?;
            let client_id = message();
            Ok([taken, open_pair, client_id])
        })
        .await
        .expect("setup");
    let expected = [
        Constraint::UsernameTaken,
        Constraint::ConnectionOpenPair,
        Constraint::MessageClientId,
    ];
    for (got, want) in conflicts.into_iter().zip(expected) {
        match got {
            Err(PersistenceError::Conflict(c)) => assert_eq!(c, want),
            other => panic!("expected Conflict({want:?}), got {other:?}"),
        }
    }
}
