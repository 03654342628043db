//! `GET /api/chat/search/`: matching (case, accents, prefixes, phrases),
//! scoping to the caller's conversations, highlighting, paging, bad input
//! and hostile input, on whichever backend the run uses.

use crate::support::*;
use serde_json::{Value, json};

/// `s` percent-encoded for a query string (everything but unreserved bytes).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /api/chat/search/` with these parameters (encoded here).
async fn search(api: &Api, token: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let path = format!("/api/chat/search/?{}", query.join("&"));
    api.call("GET", &path, Some(token), None).await
}

/// Sends each of `contents` in turn.
async fn send_all(api: &Api, token: &str, conv: i64, contents: &[&str]) {
    for content in contents {
        api.send_message(token, conv, content).await;
    }
}

/// The contents found for `q`, newest first; asserts a 200 in the API's shape.
async fn found(api: &Api, token: &str, q: &str) -> Vec<String> {
    let (status, body) = search(api, token, &[("q", q)]).await;
    assert_eq!(status, 200, "q={q}: {body}");
    contents(&body)
}

fn contents(body: &Value) -> Vec<String> {
    assert!(body["has_more"].is_boolean(), "{body}");
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("results: {body}"))
        .iter()
        .map(|m| m["content"].as_str().expect("content").to_owned())
        .collect()
}

/// The highlights found for `q`, newest first.
async fn highlighted(api: &Api, token: &str, q: &str) -> Vec<String> {
    let (status, body) = search(api, token, &[("q", q)]).await;
    assert_eq!(status, 200, "q={q}: {body}");
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|m| m["highlight"].as_str().expect("highlight").to_owned())
        .collect()
}

#[tokio::test]
async fn words_match_regardless_of_case_and_accents() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    api.send_message(&ta, conv, "Un Café au lait").await;
    api.send_message(&tb, conv, "l'école est fermée").await;
    send_all(
        &api,
        &ta,
        conv,
        &["cafeteria is not a cafe", "nothing here"],
    )
    .await;

    assert_eq!(
        found(&api, &ta, "cafe").await,
        ["cafeteria is not a cafe", "Un Café au lait"]
    );
    assert_eq!(found(&api, &tb, "CAFÉ").await.len(), 2, "both participants");
    assert_eq!(found(&api, &ta, "ÉCOLE").await, ["l'école est fermée"]);
    assert_eq!(
        found(&api, &ta, "Ecole FERMEE").await,
        ["l'école est fermée"]
    );
    assert!(
        found(&api, &ta, "ecole cafe").await.is_empty(),
        "every word must match"
    );

    assert_eq!(
        highlighted(&api, &ta, "cafe").await,
        [
            "cafeteria is not a <mark>cafe</mark>",
            "Un <mark>Café</mark> au lait"
        ]
    );
    assert_eq!(
        highlighted(&api, &ta, "ÉCOLE").await,
        ["l&#x27;<mark>école</mark> est fermée"]
    );
}

#[tokio::test]
async fn a_trailing_star_matches_a_prefix() {
    let (_server, api, ta, _tb, conv, _, _) = pair_server().await;
    send_all(
        &api,
        &ta,
        conv,
        &["Hello world", "can you help?", "a shell script", "HÉLIUM"],
    )
    .await;

    assert_eq!(
        found(&api, &ta, "hel*").await,
        ["HÉLIUM", "can you help?", "Hello world"],
        "not shell: a prefix of words, not of any text"
    );
    assert!(
        found(&api, &ta, "hel").await.is_empty(),
        "without * a whole word"
    );
    assert_eq!(
        highlighted(&api, &ta, "hel*").await,
        [
            "<mark>HÉLIUM</mark>",
            "can you <mark>help</mark>?",
            "<mark>Hello</mark> world"
        ]
    );
}

#[tokio::test]
async fn quoted_words_match_a_phrase() {
    let (_server, api, ta, _tb, conv, _, _) = pair_server().await;
    send_all(
        &api,
        &ta,
        conv,
        &[
            "good morning everyone",
            "morning, good people",
            "Good... Morning!",
        ],
    )
    .await;
    api.send_message(&ta, conv, "good evening, morning person")
        .await;

    assert_eq!(
        found(&api, &ta, "\"good morning\"").await,
        ["Good... Morning!", "good morning everyone"]
    );
    assert_eq!(
        found(&api, &ta, "good morning").await.len(),
        4,
        "the words apart"
    );
    assert_eq!(
        found(&api, &ta, "\"good morn*\"").await,
        ["Good... Morning!", "good morning everyone"]
    );
    assert_eq!(
        found(&api, &ta, "\"morning good\"").await,
        ["morning, good people"]
    );
    assert_eq!(
        highlighted(&api, &ta, "\"good morning\"").await,
        [
            "<mark>Good... Morning</mark>!",
            "<mark>good morning</mark> everyone"
        ]
    );
}

#[tokio::test]
async fn only_the_callers_conversations_ever() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (ta, tb, ab, alice, _) = api.pair("alice", "bob").await;
    let (tc, td, cd, _, _) = api.pair("carol", "dave").await;
    let (ac, _) = api.connect(&tc, &ta, alice).await;

    api.send_message(&ta, ab, "secret plan with bob").await;
    api.send_message(&tc, cd, "secret plan of carol and dave")
        .await;
    api.send_message(&td, cd, "another secret between them")
        .await;
    api.send_message(&tc, ac, "secret from carol to alice")
        .await;

    assert_eq!(
        found(&api, &ta, "secret").await,
        ["secret from carol to alice", "secret plan with bob"]
    );
    assert_eq!(found(&api, &tb, "secret").await, ["secret plan with bob"]);
    assert_eq!(found(&api, &td, "secret").await.len(), 2);
    assert_eq!(found(&api, &tc, "secret").await.len(), 3);

    let narrowed = |conv: i64| conv.to_string();
    let (status, body) = search(
        &api,
        &ta,
        &[("q", "secret"), ("conversation_id", &narrowed(ac))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(contents(&body), ["secret from carol to alice"]);

    // A conversation of others, or none at all: 404, whatever else is asked.
    for conv in [narrowed(cd), "999999".to_owned()] {
        let (status, body) =
            search(&api, &ta, &[("q", "secret"), ("conversation_id", &conv)]).await;
        assert_error_code(status, &body, 404, "not_found");
        let (status, body) = search(
            &api,
            &ta,
            &[("q", ""), ("limit", "x"), ("conversation_id", &conv)],
        )
        .await;
        assert_error_code(status, &body, 404, "not_found");
    }
    for bad in ["x", "0", "-3"] {
        let (status, body) = search(&api, &ta, &[("q", "secret"), ("conversation_id", bad)]).await;
        assert_field_error(status, &body, "conversation_id");
    }

    let (status, body) = api
        .call("GET", "/api/chat/search/?q=secret", None, None)
        .await;
    assert_error(status, &body, 401);
}

#[tokio::test]
async fn results_are_message_objects_with_an_escaped_highlight() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let sent = api
        .send_message(&ta, conv, "<b>bold</b> & \"quoted\" 'bold'")
        .await;
    let (status, body) = search(&api, &tb, &[("q", "bold")]).await;
    assert_eq!(status, 200, "{body}");
    let hit = &body["results"][0];
    assert_eq!(hit["content"], sent["content"], "content as stored");
    assert_eq!(
        hit["highlight"],
        "&lt;b&gt;<mark>bold</mark>&lt;/b&gt; &amp; &quot;quoted&quot; &#x27;<mark>bold</mark>&#x27;"
    );
    let id = assert_id(&hit["id"]);
    let (_, message) = api
        .call("GET", &format!("/api/chat/messages/{id}/"), Some(&tb), None)
        .await;
    let mut without = hit.clone();
    without.as_object_mut().expect("object").remove("highlight");
    assert_eq!(without, message, "the message object of every other route");
}

#[tokio::test]
async fn pages_newest_first_with_before_and_has_more() {
    let (_server, api, ta, _tb, conv, _, _) = pair_server().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let m = api
            .send_message(&ta, conv, &format!("note number {i}"))
            .await;
        ids.push(assert_id(&m["id"]));
        if i % 5 == 0 {
            api.send_message(&ta, conv, "unrelated").await;
        }
    }
    ids.reverse();
    let page_ids = |body: &Value| -> Vec<i64> {
        body["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|m| assert_id(&m["id"]))
            .collect()
    };

    let (status, body) = search(&api, &ta, &[("q", "note")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(page_ids(&body), ids[..20], "20 by default, newest first");
    assert_eq!(body["has_more"], true);

    let mut seen: Vec<i64> = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let b = before.map(|b| b.to_string());
        let mut params = vec![("q", "note"), ("limit", "7")];
        if let Some(b) = &b {
            params.push(("before", b));
        }
        let (status, body) = search(&api, &ta, &params).await;
        assert_eq!(status, 200, "{body}");
        let page = page_ids(&body);
        assert!(page.len() <= 7);
        seen.extend(&page);
        if body["has_more"] == false {
            break;
        }
        before = page.last().copied();
    }
    assert_eq!(seen, ids, "every match once, newest first");

    let last = ids[ids.len() - 1].to_string();
    let (_, body) = search(&api, &ta, &[("q", "note"), ("before", &last)]).await;
    assert_eq!(
        (page_ids(&body).len(), &body["has_more"]),
        (0, &json!(false))
    );

    let (_, body) = search(&api, &ta, &[("q", "note"), ("limit", "1000")]).await;
    assert_eq!(page_ids(&body).len(), 25);
}

#[tokio::test]
async fn limit_is_clamped_to_100() {
    let (_server, api, ta, _tb, conv, _, _) = pair_server().await;
    for i in 0..101 {
        api.send_message(&ta, conv, &format!("bulk {i}")).await;
    }
    let (status, body) = search(&api, &ta, &[("q", "bulk"), ("limit", "1000")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().expect("results").len(), 100);
    assert_eq!(body["has_more"], true);
}

#[tokio::test]
async fn bad_parameters_are_400_with_the_error_body() {
    let (_server, api, ta, _tb, conv, _, _) = pair_server().await;
    api.send_message(&ta, conv, "hello").await;
    let long = "a".repeat(257);
    let cases: [(&[(&str, &str)], &str); 10] = [
        (&[], "q"),
        (&[("q", "")], "q"),
        (&[("q", "   ")], "q"),
        (&[("q", &long)], "q"),
        (&[("q", "hello"), ("limit", "0")], "limit"),
        (&[("q", "hello"), ("limit", "-1")], "limit"),
        (&[("q", "hello"), ("limit", "x")], "limit"),
        (&[("q", "hello"), ("before", "x")], "before"),
        (&[("q", "hello"), ("before", "0")], "before"),
        (&[("q", "hello"), ("before", "-5")], "before"),
    ];
    for (params, field) in cases {
        let (status, body) = search(&api, &ta, params).await;
        assert_field_error(status, &body, field);
        if field != "q" {
            // The field's own message, not another error's text.
            assert_eq!(
                body["fields"][field],
                serde_json::json!(["Must be a positive integer."]),
                "{body}"
            );
        }
    }
    let max = "é".repeat(256);
    let (status, body) = search(&api, &ta, &[("q", &max)]).await;
    assert_eq!(status, 200, "256 characters are fine: {body}");
}

#[tokio::test]
async fn quotes_and_operators_are_text_not_syntax() {
    let (_server, api, ta, _tb, conv, _, _) = pair_server().await;
    send_all(
        &api,
        &ta,
        conv,
        &["a and b", "a or b", "x NEAR y", "good morning"],
    )
    .await;

    assert_eq!(found(&api, &ta, "a OR b").await, ["a or b"], "OR is a word");
    assert_eq!(
        found(&api, &ta, "a AND b").await,
        ["a and b"],
        "AND is a word"
    );
    assert_eq!(found(&api, &ta, "NEAR").await, ["x NEAR y"]);
    assert!(found(&api, &ta, "NOT x").await.is_empty(), "NOT is a word");
    assert_eq!(
        found(&api, &ta, "-x").await,
        ["x NEAR y"],
        "- does not exclude"
    );
    assert_eq!(
        found(&api, &ta, "\"good morning").await,
        ["good morning"],
        "an unbalanced quote is literal"
    );
    assert_eq!(found(&api, &ta, "good\"").await, ["good morning"]);
}

#[tokio::test]
async fn hostile_input_never_fails_on_the_server() {
    let (_server, api, ta, _tb, conv, _, _) = pair_server().await;
    api.send_message(&ta, conv, "a & b | c ! d (e) 'f' \"g\" h:* <i> \\j")
        .await;
    let hostile = [
        "a & b",
        "a&b",
        "!x",
        "!",
        "(",
        ")",
        "()",
        "(a",
        "\"",
        "\"\"",
        "\"\"\"",
        "*",
        "**",
        "a**",
        "*a",
        ":*",
        "a:*",
        "a:",
        "\\",
        "\\\\",
        "\\'",
        "'",
        "''",
        "a'b",
        "NEAR(a b)",
        "NEAR",
        "a OR b",
        "OR",
        "AND",
        "NOT",
        "a NOT b",
        "-a",
        "+a",
        "^a",
        "a^",
        "<->",
        "a <-> b",
        "a <2> b",
        "a|b",
        "|",
        "&",
        "a:b",
        "col:x",
        "{a}",
        "[a]",
        "a.b.c",
        "%",
        "%%",
        "_",
        "😀",
        "😀a",
        "a\u{0}b",
        "\u{301}",
        "e\u{301}",
        "' OR 1=1 --",
        "\"; DROP TABLE messages; --",
        "$1",
        "?",
        "?1",
        "a*b*c*",
        "\"a\" \"b",
        "\"(a\" OR \"b)\"",
        "'a':*",
        "a:*B",
        "a:A",
        "!!!!!",
        "&&||",
        "\"*\"",
        "* * *",
        "\t",
        "ab\ncd",
        "NEAR/2",
        "x NEAR/3 y",
        "{a b}: c",
    ];
    for q in hostile {
        let (status, body) = search(&api, &ta, &[("q", q)]).await;
        if q.trim().is_empty() {
            assert_field_error(status, &body, "q");
        } else {
            assert_eq!(status, 200, "q={q:?}: {body}");
            contents(&body);
        }
    }
    // The message is still findable by its words.
    assert_eq!(found(&api, &ta, "h").await.len(), 1);
    assert_eq!(found(&api, &ta, "j").await.len(), 1);
}

#[tokio::test]
async fn messages_sent_over_websocket_are_found_too() {
    let (server, api, ta, _tb, conv, _, _) = pair_server().await;
    let mut ws = crate::ws_support::join(&server.ws_url(""), conv, &ta).await;
    crate::ws_support::send(
        &mut ws,
        json!({"type": "chat_message", "content": "über the socket"}),
    )
    .await;
    crate::ws_support::next_of(&mut ws, "chat_message").await;
    assert_eq!(found(&api, &ta, "uber").await, ["über the socket"]);
}

#[tokio::test]
async fn a_phrase_of_three_words_needs_them_all_in_order() {
    let (_server, api, ta, _tb, conv, _, _) = pair_server().await;
    send_all(
        &api,
        &ta,
        conv,
        &[
            "one of the best",
            "one of them",
            "of the one",
            // Both of the phrase's pairs, but not the phrase.
            "one of x of the",
            "One, of; THE end",
        ],
    )
    .await;
    assert_eq!(
        found(&api, &ta, "\"one of the\"").await,
        ["One, of; THE end", "one of the best"]
    );
    assert_eq!(
        found(&api, &ta, "\"of the\"").await,
        [
            "One, of; THE end",
            "one of x of the",
            "of the one",
            "one of the best"
        ]
    );
    // A prefix first in a phrase: its words in order still.
    assert_eq!(
        found(&api, &ta, "\"on* of\"").await,
        [
            "One, of; THE end",
            "one of x of the",
            "one of them",
            "one of the best"
        ]
    );
    assert_eq!(found(&api, &ta, "\"of one\"").await, Vec::<String>::new());
}

#[tokio::test]
async fn participants_and_word_pairs_are_not_words() {
    let (_server, api, ta, tb, conv, alice, bob) = pair_server().await;
    send_all(&api, &ta, conv, &["plain text", "unicorn", "good morning"]).await;
    assert_eq!(found(&api, &ta, "u*").await, ["unicorn"]);
    for q in [
        format!("u{alice}"),
        format!("u{bob}*"),
        "good*morning".to_owned(),
        "\"good\" \"morning\"".to_owned(),
    ] {
        let want: Vec<String> = if q.contains("good") {
            vec!["good morning".into()]
        } else {
            Vec::new()
        };
        assert_eq!(found(&api, &tb, &q).await, want, "q={q}");
    }
    assert_eq!(
        found(&api, &ta, "\"morning good\"").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn messages_with_files_are_found_by_their_text() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let file = crate::attachments::uploaded(&api, &ta, "notes.txt", b"plain notes").await;
    let body = json!({"conversation_id": conv, "content": "Holiday photos, the best ones",
                      "attachment_ids": [file["id"]]});
    let (status, m) = api
        .call("POST", "/api/chat/messages/", Some(&ta), Some(body))
        .await;
    assert_eq!(status, 201, "{m}");
    api.send_message(&ta, conv, "holiday plans").await;
    assert_eq!(
        found(&api, &tb, "holiday").await,
        ["holiday plans", "Holiday photos, the best ones"]
    );
    assert_eq!(
        found(&api, &tb, "\"photos the best\"").await,
        ["Holiday photos, the best ones"]
    );
}
