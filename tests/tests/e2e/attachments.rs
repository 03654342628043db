//! Attachments (API.md "Attachments"): uploads streamed to storage with
//! sniffed types and limits, images with dimensions and thumbnails,
//! sending them over HTTP and both socket kinds, participant-only
//! downloads with their headers, ranges and ETags, the cleanup of uploads
//! never sent, and a server killed in the middle of an upload.

use crate::support::{
    Api, NodeProcess, ServerOptions, TestDb, TestServer, assert_error, pair_server,
};
use crate::ws_support::{join, next_of, send, stream};
use serde_json::{Value, json};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUNDARY: &str = "chat-test-boundary-7d1f";

/// One part of a multipart body.
pub struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub bytes: &'a [u8],
}

/// A `multipart/form-data` body of `parts`, closed unless `unterminated`.
pub fn multipart(parts: &[Part<'_>], unterminated: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match p.filename {
            Some(f) => format!("form-data; name=\"{}\"; filename=\"{f}\"", p.name),
            None => format!("form-data; name=\"{}\"", p.name),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    if !unterminated {
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    }
    body
}

/// POSTs `body` to the upload route with `content_type`; (status, JSON).
pub async fn post_upload(
    api: &Api,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let res = api
        .http
        .post(api.url("/api/chat/attachments/"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Uploads one file named `name`; (status, JSON).
pub async fn upload(api: &Api, token: &str, name: &str, bytes: &[u8]) -> (u16, Value) {
    let body = multipart(
        &[Part {
            name: "file",
            filename: Some(name),
            bytes,
        }],
        false,
    );
    post_upload(
        api,
        token,
        &format!("multipart/form-data; boundary={BOUNDARY}"),
        body,
    )
    .await
}

/// Uploads and asserts 201; the attachment object.
pub async fn uploaded(api: &Api, token: &str, name: &str, bytes: &[u8]) -> Value {
    let (status, body) = upload(api, token, name, bytes).await;
    assert_eq!(status, 201, "{body}");
    body
}

/// A PNG of `w` × `h` pixels (a gradient, so it does not compress to nothing).
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8, 255])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// A PNG whose header declares `w` × `h` pixels and whose data is a stub:
/// a decompression bomb as far as its header goes.
fn declared_png(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// GET with optional bearer token and headers; (status, headers, bytes).
pub async fn get_raw(
    api: &Api,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = api.http.get(api.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("download");
    let status = res.status().as_u16();
    let h = res.headers().clone();
    let bytes = res.bytes().await.expect("bytes").to_vec();
    (status, h, bytes)
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Files under `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn url_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_owned()
}

#[tokio::test]
async fn an_image_is_uploaded_sent_and_downloaded_by_participants_only() {
    let (server, api, ta, tb, conv, alice, _bob) = pair_server().await;
    let (_carol, tc) = api.user("carol").await;
    let bytes = png(640, 480);
    let a = uploaded(&api, &ta, "../../holiday photo.png", &bytes).await;
    assert_eq!(a["filename"], "holiday photo.png");
    assert_eq!(a["content_type"], "image/png");
    assert_eq!(a["size"], bytes.len());
    assert_eq!(
        (a["width"].as_i64(), a["height"].as_i64()),
        (Some(640), Some(480))
    );
    let id = a["id"].as_i64().expect("id");
    let (url, thumb) = (url_of(&a, "url"), url_of(&a, "thumbnail_url"));
    assert_eq!(url, format!("/api/chat/attachments/{id}/"));

    // Before it is sent: the uploader only.
    let (status, h, got) = get_raw(&api, &url, Some(&ta), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(got, bytes);
    assert_eq!(header(&h, "content-type"), "image/png");
    assert_eq!(header(&h, "content-length"), bytes.len().to_string());
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert!(
        header(&h, "content-disposition").starts_with("inline;"),
        "{h:?}"
    );
    let etag = header(&h, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    for token in [&tb, &tc] {
        let (status, _, body) = get_raw(&api, &url, Some(token), &[]).await;
        assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    }

    // Sent with no text over HTTP.
    let body = json!({"conversation_id": conv, "attachment_ids": [id]});
    let (status, m) = api
        .call("POST", "/api/chat/messages/", Some(&ta), Some(body))
        .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["content"], "");
    assert_eq!(m["attachments"], json!([a.clone()]));
    assert_eq!(m["sender_id"], alice);

    // Now the other participant too, by header or query token; not carol.
    let (status, _, got) = get_raw(&api, &url, Some(&tb), &[]).await;
    assert_eq!((status, got.len()), (200, bytes.len()));
    let (status, _, got) = get_raw(&api, &format!("{url}?token={tb}"), None, &[]).await;
    assert_eq!((status, got.len()), (200, bytes.len()));
    let (status, h, t) = get_raw(&api, &format!("{thumb}?token={tb}"), None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "image/jpeg");
    let small = image::load_from_memory(&t).expect("thumbnail decodes");
    assert_eq!((small.width(), small.height()), (320, 240));
    for path in [&url, &thumb] {
        let (status, _, _) = get_raw(&api, path, Some(&tc), &[]).await;
        assert_eq!(status, 404);
        let (status, _, _) = get_raw(&api, path, None, &[]).await;
        assert_eq!(status, 401);
    }
    let (status, _, _) = get_raw(&api, "/api/chat/attachments/999999/", Some(&tc), &[]).await;
    assert_eq!(status, 404);

    // Caching and ranges.
    let (status, _, body) = get_raw(&api, &url, Some(&tb), &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (304, 0));
    let (status, h, part) = get_raw(&api, &url, Some(&tb), &[("range", "bytes=0-9")]).await;
    assert_eq!(status, 206);
    assert_eq!(part, bytes[..10]);
    assert_eq!(
        header(&h, "content-range"),
        format!("bytes 0-9/{}", bytes.len())
    );
    let (status, _, part) = get_raw(&api, &url, Some(&tb), &[("range", "bytes=-5")]).await;
    assert_eq!((status, part.as_slice()), (206, &bytes[bytes.len() - 5..]));
    let far = format!("bytes={}-", bytes.len() + 10);
    let (status, h, _) = get_raw(&api, &url, Some(&tb), &[("range", &far)]).await;
    assert_eq!(status, 416);
    assert_eq!(
        header(&h, "content-range"),
        format!("bytes */{}", bytes.len())
    );

    // Every message object lists it: history, the message, the conversation.
    let (_, page) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/messages/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(page["results"][0]["attachments"], json!([a.clone()]));
    let (_, one) = api
        .call(
            "GET",
            &format!("/api/chat/messages/{}/", m["id"]),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(one["attachments"], json!([a.clone()]));
    let (_, c) = api
        .call(
            "GET",
            &format!("/api/chat/conversations/{conv}/"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!(c["last_message"]["attachments"], json!([a]));

    // A message without files lists none.
    let plain = api.send_message(&tb, conv, "nice").await;
    assert_eq!(plain["attachments"], json!([]));
    drop(server);
}

#[tokio::test]
async fn files_go_out_over_both_socket_kinds_with_their_event() {
    let (server, api, ta, tb, conv, _alice, _bob) = pair_server().await;
    let base = server.ws_url("");
    let mut alice_ws = join(&base, conv, &ta).await;
    let mut bob_ws = join(&base, conv, &tb).await;
    let (mut bob_stream, _) = stream(&server, &tb, "").await;

    let notes = uploaded(
        &api,
        &ta,
        "notes.txt",
        "première ligne\nsecond line\n".as_bytes(),
    )
    .await;
    assert_eq!(notes["content_type"], "text/plain");
    assert_eq!(
        (notes["width"].clone(), notes["thumbnail_url"].clone()),
        (Value::Null, Value::Null)
    );
    let pdf = uploaded(
        &api,
        &ta,
        "report.pdf",
        b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n",
    )
    .await;
    assert_eq!(pdf["content_type"], "application/pdf");
    send(
        &mut alice_ws,
        json!({"type": "chat_message", "content": "two files",
               "attachment_ids": [notes["id"], pdf["id"]], "client_id": "f1"}),
    )
    .await;
    let event = next_of(&mut bob_ws, "chat_message").await;
    assert_eq!(
        event["attachments"],
        json!([notes.clone(), pdf.clone()]),
        "{event}"
    );
    let on_stream = next_of(&mut bob_stream, "chat_message").await;
    assert_eq!(on_stream["attachments"], event["attachments"]);
    assert!(on_stream["seq"].as_i64().is_some());
    let mine = next_of(&mut alice_ws, "chat_message").await;
    assert_eq!(mine["attachments"], event["attachments"]);

    // A pdf downloads as an attachment; text says its charset.
    let (status, h, _) = get_raw(&api, &url_of(&pdf, "url"), Some(&tb), &[]).await;
    assert_eq!(status, 200);
    assert!(
        header(&h, "content-disposition").starts_with("attachment;"),
        "{h:?}"
    );
    let (_, h, body) = get_raw(&api, &url_of(&notes, "url"), Some(&tb), &[]).await;
    assert_eq!(header(&h, "content-type"), "text/plain; charset=utf-8");
    assert_eq!(
        String::from_utf8(body).expect("utf-8"),
        "première ligne\nsecond line\n"
    );
    let (status, _, _) = get_raw(
        &api,
        &format!("{}thumbnail/", url_of(&pdf, "url")),
        Some(&tb),
        &[],
    )
    .await;
    assert_eq!(status, 404, "no thumbnail for a pdf");

    // The retry with the same client_id answers the original, files and all.
    send(
        &mut alice_ws,
        json!({"type": "chat_message", "content": "two files",
               "attachment_ids": [notes["id"], pdf["id"]], "client_id": "f1"}),
    )
    .await;
    let again = next_of(&mut alice_ws, "chat_message").await;
    assert_eq!(again["message_id"], event["message_id"]);
    assert_eq!(again["attachments"], event["attachments"]);

    // Over the user stream: bob sends one, content left out.
    let img = uploaded(&api, &tb, "dot.png", &png(3, 2)).await;
    send(
        &mut bob_stream,
        json!({"type": "chat_message", "conversation_id": conv, "attachment_ids": [img["id"]]}),
    )
    .await;
    let e = next_of(&mut alice_ws, "chat_message").await;
    assert_eq!(e["content"], "");
    assert_eq!(e["attachments"], json!([img]));
}

#[tokio::test]
async fn bad_uploads_and_bad_ids_are_refused_and_leave_nothing_behind() {
    let (server, api, ta, tb, conv, _alice, _bob) = pair_server().await;
    let files_dir = server.db.files_dir.clone();
    let form = format!("multipart/form-data; boundary={BOUNDARY}");
    let file = |bytes: &'static [u8]| Part {
        name: "file",
        filename: Some("a.txt"),
        bytes,
    };

    // No file field; two files; no boundary; not multipart; cut short.
    let only_other = multipart(
        &[Part {
            name: "note",
            filename: None,
            bytes: b"hi",
        }],
        false,
    );
    let (status, body) = post_upload(&api, &ta, &form, only_other).await;
    assert_error(status, &body, 400);
    assert!(body["fields"]["file"].is_array(), "{body}");
    let two = multipart(&[file(b"one"), file(b"two")], false);
    let (status, body) = post_upload(&api, &ta, &form, two).await;
    assert_error(status, &body, 400);
    let (status, body) = post_upload(
        &api,
        &ta,
        "multipart/form-data",
        multipart(&[file(b"x")], false),
    )
    .await;
    assert_error(status, &body, 400);
    let (status, body) = post_upload(
        &api,
        &ta,
        "multipart/form-data; boundary=other",
        multipart(&[file(b"x")], false),
    )
    .await;
    assert_error(status, &body, 400);
    let (status, body) = post_upload(&api, &ta, "application/json", b"{}".to_vec()).await;
    assert_error(status, &body, 415);
    let (status, body) = post_upload(&api, &ta, &form, multipart(&[file(b"half")], true)).await;
    assert_error(status, &body, 400);

    // Types: sniffed, not trusted.
    let (status, body) = upload(
        &api,
        &ta,
        "evil.png",
        b"<html><script>alert(1)</script></html>",
    )
    .await;
    assert_error(status, &body, 415);
    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip file";
    let (status, body) = upload(&api, &ta, "a.txt", zip).await;
    assert_error(status, &body, 415);
    let mut binary_tail = vec![b'a'; 20_000];
    binary_tail.push(0);
    let (status, body) = upload(&api, &ta, "a.txt", &binary_tail).await;
    assert_error(status, &body, 415);

    // Oversize, by one byte; and a bomb declared in a PNG header.
    let big = vec![b'a'; 10 * 1024 * 1024 + 1];
    let (status, body) = upload(&api, &ta, "big.txt", &big).await;
    assert_error(status, &body, 413);
    let (status, body) = upload(&api, &ta, "bomb.png", &declared_png(50_000, 50_000)).await;
    assert_error(status, &body, 400);
    assert!(
        body["fields"]["file"][0]
            .as_str()
            .unwrap_or("")
            .contains("pixels"),
        "{body}"
    );

    // Ids: someone else's, already sent, unknown, too many, repeated.
    let bobs = uploaded(&api, &tb, "b.txt", b"bob's").await;
    let mine = uploaded(&api, &ta, "a.txt", b"alice's").await;
    let send_ids =
        |ids: Value| json!({"conversation_id": conv, "content": "x", "attachment_ids": ids});
    for ids in [
        json!([bobs["id"]]),
        json!([999_999]),
        json!([mine["id"], mine["id"]]),
        json!((1..=11).collect::<Vec<i64>>()),
        json!("1"),
        json!([0]),
    ] {
        let (status, body) = api
            .call(
                "POST",
                "/api/chat/messages/",
                Some(&ta),
                Some(send_ids(ids.clone())),
            )
            .await;
        assert_error(status, &body, 400);
        assert!(body["fields"]["attachment_ids"].is_array(), "{ids}: {body}");
    }
    let (status, body) = api
        .call(
            "POST",
            "/api/chat/messages/",
            Some(&ta),
            Some(json!({"conversation_id": conv, "content": " "})),
        )
        .await;
    assert_error(status, &body, 400);
    assert_eq!(api.history_len(&ta, conv).await, 0, "nothing stored");
    let (status, _) = api
        .call(
            "POST",
            "/api/chat/messages/",
            Some(&ta),
            Some(send_ids(json!([mine["id"]]))),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = api
        .call(
            "POST",
            "/api/chat/messages/",
            Some(&ta),
            Some(send_ids(json!([mine["id"]]))),
        )
        .await;
    assert_error(status, &body, 400);
    assert_eq!(api.history_len(&ta, conv).await, 1);

    // Only the two good uploads are on disk: objects, nothing spooled.
    let stored = files_under(&files_dir);
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(
        stored
            .iter()
            .all(|p| p.starts_with(files_dir.join("objects"))),
        "{stored:?}"
    );
}

/// An upload over the limit is answered 413 once the limit is crossed,
/// while the client is still sending: it never has to send the rest.
#[tokio::test]
async fn an_endless_upload_is_refused_as_soon_as_it_crosses_the_limit() {
    let (server, api, ta, _tb, _conv, _a, _b) = pair_server().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/chat/attachments/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ta}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    let part = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"\r\n\r\n"
    );
    let chunk = |data: &[u8]| {
        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
        c.extend_from_slice(data);
        c.extend_from_slice(b"\r\n");
        c
    };
    tcp.write_all(&chunk(part.as_bytes())).await.expect("part");
    let (mut read, mut write) = tcp.into_split();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        let block = chunk(&[b'a'; 64 * 1024]);
        // Up to 200 MiB, or until the server closes the connection.
        while counter.load(std::sync::atomic::Ordering::Relaxed) < 200 * 1024 * 1024 {
            if write.write_all(&block).await.is_err() {
                break;
            }
            counter.fetch_add(64 * 1024, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), read.read(&mut answer))
        .await
        .expect("an answer while still sending")
        .expect("read");
    let sent_then = sent.load(std::sync::atomic::Ordering::Relaxed);
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.to_lowercase().contains("connection: close"), "{text}");
    // 10 MiB read, and what the sockets' buffers hold.
    assert!(
        sent_then < 24 * 1024 * 1024,
        "answered after {sent_then} bytes"
    );
    writer.abort();
    drop(api);
}

#[tokio::test]
async fn uploads_never_sent_are_deleted_after_their_time() {
    let server = TestServer::start_with(&[
        ("CHAT__ATTACHMENTS__UNATTACHED_TTL_SECONDS", "1"),
        ("CHAT__ATTACHMENTS__CLEANUP_INTERVAL_SECONDS", "1"),
    ])
    .await;
    let (_s, api, ta, tb, conv, _a, _b) = crate::support::pair_on(server).await;
    let kept = uploaded(&api, &ta, "kept.png", &png(10, 10)).await;
    let body = json!({"conversation_id": conv, "attachment_ids": [kept["id"]]});
    let (status, _) = api
        .call("POST", "/api/chat/messages/", Some(&ta), Some(body))
        .await;
    assert_eq!(status, 201);
    let dropped = uploaded(&api, &ta, "dropped.png", &png(10, 10)).await;
    let dir = _s.db.files_dir.join("objects");
    assert_eq!(files_under(&dir).len(), 4, "two files, two thumbnails");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = get_raw(&api, &url_of(&dropped, "url"), Some(&ta), &[]).await;
        if status == 404 && files_under(&dir).len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cleanup did not run"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _, _) = get_raw(&api, &url_of(&kept, "url"), Some(&tb), &[]).await;
    assert_eq!(status, 200, "a sent file stays");
    let late = json!({"conversation_id": conv, "attachment_ids": [dropped["id"]]});
    let (status, body) = api
        .call("POST", "/api/chat/messages/", Some(&ta), Some(late))
        .await;
    assert_error(status, &body, 400);
}

#[test]
fn attachment_node_process() {
    chat_tests::node_process_main();
}

/// A node killed (SIGKILL) while a file streams in leaves no attachment
/// anyone can see, and only a spool file, which the cleanup of the next
/// node removes once it is older than the retention time.
#[tokio::test]
async fn a_kill_mid_upload_leaves_nothing_the_cleanup_does_not_remove() {
    let db = Arc::new(TestDb::new().await);
    let options = ServerOptions::default();
    let mut node = NodeProcess::start(&db, &options, "attachments::attachment_node_process").await;
    let api_a = Api {
        http: reqwest::Client::new(),
        base: node.url(""),
    };
    let (ta, _tb, _conv, _a, _b) = api_a.pair("alice", "bob").await;
    let mut tcp = tokio::net::TcpStream::connect(node.addr)
        .await
        .expect("connect");
    let total = 5 * 1024 * 1024;
    let head = format!(
        "POST /api/chat/attachments/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ta}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"\r\n\r\n",
        total
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tcp.write_all(&vec![b'a'; 1024 * 1024])
        .await
        .expect("first MiB");
    // The node has spooled some of it.
    let spool = db.files_dir.join("spool");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while files_under(&spool).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing spooled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.kill().await;
    drop(tcp);
    assert!(files_under(&db.files_dir.join("objects")).is_empty());

    let next = TestServer::start_on(
        db.clone(),
        ServerOptions {
            env: vec![
                (
                    "CHAT__ATTACHMENTS__UNATTACHED_TTL_SECONDS".into(),
                    "1".into(),
                ),
                (
                    "CHAT__ATTACHMENTS__CLEANUP_INTERVAL_SECONDS".into(),
                    "1".into(),
                ),
                (
                    "CHAT__ATTACHMENTS__UPLOAD_TIMEOUT_SECONDS".into(),
                    "1".into(),
                ),
            ],
            ..ServerOptions::default()
        },
    )
    .await;
    let api = Api::new(&next);
    let ta = api_a_token(&api).await;
    for id in 1..=3 {
        let (status, _, _) = get_raw(
            &api,
            &format!("/api/chat/attachments/{id}/"),
            Some(&ta),
            &[],
        )
        .await;
        assert_eq!(status, 404, "no attachment {id}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !files_under(&db.files_dir).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: {:?}",
            files_under(&db.files_dir)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Alice's token from the next node (same database).
async fn api_a_token(api: &Api) -> String {
    let (status, tokens) = api
        .call(
            "POST",
            "/api/auth/token/",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    tokens["access"].as_str().expect("access").to_owned()
}

/// The S3 store, against a real S3-compatible server (moto): the same
/// upload, send, download (ranges, thumbnail) and access rules; a bad upload
/// leaves no object; the cleanup deletes the objects of uploads never sent.
#[tokio::test]
async fn the_s3_store_keeps_serves_and_cleans_up_files() {
    let s3 = chat_tests::S3Server::get();
    let bucket = s3.bucket().await;
    let mut env = s3.settings(&bucket);
    env.push((
        "CHAT__ATTACHMENTS__UNATTACHED_TTL_SECONDS".into(),
        "2".into(),
    ));
    env.push((
        "CHAT__ATTACHMENTS__CLEANUP_INTERVAL_SECONDS".into(),
        "1".into(),
    ));
    let server = TestServer::start_on(
        Arc::new(TestDb::new().await),
        ServerOptions {
            env,
            ..ServerOptions::default()
        },
    )
    .await;
    let (server, api, ta, tb, conv, _a, _b) = crate::support::pair_on(server).await;
    let (_carol, tc) = api.user("carol").await;

    let bytes = png(400, 100);
    let img = uploaded(&api, &ta, "wide.png", &bytes).await;
    assert_eq!(
        (img["width"].as_i64(), img["height"].as_i64()),
        (Some(400), Some(100))
    );
    // Larger than one S3 part: sent in parts.
    let mut text = String::new();
    while text.len() < 7 * 1024 * 1024 {
        text.push_str("a line of text for the multipart upload to S3\n");
    }
    let notes = uploaded(&api, &ta, "notes.txt", text.as_bytes()).await;
    let keys = s3.keys(&bucket).await;
    assert_eq!(keys.len(), 3, "file, thumbnail, notes: {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("chat/")), "{keys:?}");

    let body = json!({"conversation_id": conv, "content": "s3",
                      "attachment_ids": [img["id"], notes["id"]]});
    let (status, m) = api
        .call("POST", "/api/chat/messages/", Some(&ta), Some(body))
        .await;
    assert_eq!(status, 201, "{m}");
    let (status, _, got) = get_raw(&api, &url_of(&img, "url"), Some(&tb), &[]).await;
    assert_eq!((status, got == bytes), (200, true));
    let (status, _, thumb) = get_raw(&api, &url_of(&img, "thumbnail_url"), Some(&tb), &[]).await;
    assert_eq!(status, 200);
    let small = image::load_from_memory(&thumb).expect("thumbnail");
    assert_eq!((small.width(), small.height()), (320, 80));
    let (status, h, got) = get_raw(&api, &url_of(&notes, "url"), Some(&tb), &[]).await;
    assert_eq!((status, got.len()), (200, text.len()));
    assert_eq!(header(&h, "content-length"), text.len().to_string());
    let (status, h, part) = get_raw(
        &api,
        &url_of(&notes, "url"),
        Some(&tb),
        &[("range", "bytes=100-199")],
    )
    .await;
    assert_eq!(status, 206);
    assert_eq!(part, text.as_bytes()[100..200]);
    assert_eq!(
        header(&h, "content-range"),
        format!("bytes 100-199/{}", text.len())
    );
    let (status, _, _) = get_raw(&api, &url_of(&img, "url"), Some(&tc), &[]).await;
    assert_eq!(status, 404);

    // Refused uploads store nothing; one never sent is deleted in time.
    let (status, body) = upload(&api, &ta, "x.bin", b"\x00\x01\x02\x03 binary").await;
    assert_error(status, &body, 415);
    let dropped = uploaded(&api, &ta, "dropped.pdf", b"%PDF-1.4\n%%EOF\n").await;
    assert_eq!(s3.keys(&bucket).await.len(), 4);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s3.keys(&bucket).await.len() != 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cleanup did not delete it"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, _, _) = get_raw(&api, &url_of(&dropped, "url"), Some(&ta), &[]).await;
    assert_eq!(status, 404);
    let (status, _, _) = get_raw(&api, &url_of(&img, "url"), Some(&tb), &[]).await;
    assert_eq!(status, 200, "sent files stay");
    let spooled = files_under(&server.db.files_dir);
    assert!(
        spooled.is_empty(),
        "nothing stays on local disk: {spooled:?}"
    );
}

/// The cleanup's claim: of several nodes claiming at once, each expired
/// upload goes to one (the others skip it); a claimed upload can no longer
/// be sent; a claim whose lease ran out (its node died) is taken again.
#[tokio::test]
async fn each_expired_upload_is_claimed_by_one_node_only() {
    use chat_persistence::attachments::claim_expired;
    let (server, api, ta, _tb, conv, _a, _b) = pair_server().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let a = uploaded(&api, &ta, &format!("f{i}.txt"), b"to be claimed").await;
        ids.push(a["id"].as_i64().expect("id"));
    }
    // Everything counts as expired: older than an hour from now.
    let older_than = chrono::Utc::now() + chrono::Duration::hours(1);
    let lease = chrono::Utc::now() + chrono::Duration::minutes(5);
    let claim = |limit: i64| {
        let db = server.database.clone();
        async move {
            db.run(move |c| claim_expired(c, older_than, lease, limit))
                .await
                .expect("claim")
        }
    };
    let (one, two, three) = tokio::join!(claim(4), claim(4), claim(4));
    let mut all: Vec<i64> = [&one, &two, &three]
        .iter()
        .flat_map(|c| c.iter().map(|e| e.id.0))
        .collect();
    all.sort_unstable();
    assert_eq!(all, ids, "every upload claimed exactly once");
    assert!(claim(100).await.is_empty(), "claimed ones are skipped");
    let body = json!({"conversation_id": conv, "attachment_ids": [ids[0]]});
    let (status, body) = api
        .call("POST", "/api/chat/messages/", Some(&ta), Some(body))
        .await;
    assert_error(status, &body, 400);

    // Leases that ran out (their node died): taken again.
    let expired_lease = server
        .database
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("UPDATE attachments SET claimed_until = created_at")
                .execute(c)
                .map_err(chat_persistence::PersistenceError::from)
        })
        .await
        .expect("expire the leases");
    assert_eq!(expired_lease, ids.len());
    assert_eq!(claim(100).await.len(), ids.len());
}

/// A client that trickles its upload is cut off at the upload deadline
/// (408), even though it never pauses long enough for the idle deadline;
/// nothing is left behind.
#[tokio::test]
async fn a_trickling_upload_times_out() {
    let server =
        TestServer::start_with(&[("CHAT__ATTACHMENTS__UPLOAD_TIMEOUT_SECONDS", "2")]).await;
    let (server, _api, ta, _tb, _conv, _a, _b) = crate::support::pair_on(server).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/chat/attachments/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ta}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 100000\r\n\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    let (mut read, mut write) = tcp.into_split();
    let started = tokio::time::Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if write.write_all(&[b'a'; 10]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(15), read.read(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    trickle.abort();
    assert!(files_under(&server.db.files_dir).is_empty(), "nothing left");
}

/// An S3 store that cannot be reached: the upload answers 503 within
/// seconds and leaves no row and no spool file behind.
#[tokio::test]
async fn an_unreachable_s3_store_is_a_503_not_a_hang() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let env: Vec<(String, String)> = [
        ("CHAT__ATTACHMENTS__STORE", "s3"),
        ("CHAT__ATTACHMENTS__S3_BUCKET", "nowhere"),
        ("CHAT__ATTACHMENTS__S3_ALLOW_HTTP", "true"),
        ("CHAT__ATTACHMENTS__S3_ACCESS_KEY_ID", "testing"),
        ("CHAT__ATTACHMENTS__S3_SECRET_ACCESS_KEY", "testing"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([(
        "CHAT__ATTACHMENTS__S3_ENDPOINT".to_owned(),
        format!("http://127.0.0.1:{closed}"),
    )])
    .collect();
    let server = TestServer::start_on(
        Arc::new(TestDb::new().await),
        ServerOptions {
            env,
            ..ServerOptions::default()
        },
    )
    .await;
    let (server, api, ta, _tb, conv, _a, _b) = crate::support::pair_on(server).await;
    let started = tokio::time::Instant::now();
    let (status, body) = upload(&api, &ta, "a.txt", b"to nowhere").await;
    assert_error(status, &body, 503);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        files_under(&server.db.files_dir).is_empty(),
        "no spool file left"
    );
    let body = json!({"conversation_id": conv, "content": "x", "attachment_ids": [1]});
    let (status, body) = api
        .call("POST", "/api/chat/messages/", Some(&ta), Some(body))
        .await;
    assert_error(status, &body, 400);
}

/// Two nodes on one database, one Redis and one store: a file uploaded
/// through one is sent and downloaded through the other, and the event
/// reaches a socket on the first.
#[tokio::test]
async fn a_file_uploaded_on_one_node_is_sent_and_read_on_another() {
    let Some((a, b)) = crate::support::two_nodes(None).await else {
        return;
    };
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let (ta, tb, conv, _alice, _bob) = api_a.pair("alice", "bob").await;
    let mut bob_ws = join(&a.ws_url(""), conv, &tb).await;
    let img = uploaded(&api_a, &ta, "p.png", &png(30, 20)).await;
    let body = json!({"conversation_id": conv, "content": "from b", "attachment_ids": [img["id"]]});
    let (status, m) = api_b
        .call("POST", "/api/chat/messages/", Some(&ta), Some(body))
        .await;
    assert_eq!(status, 201, "{m}");
    let event = next_of(&mut bob_ws, "chat_message").await;
    assert_eq!(event["attachments"], json!([img.clone()]));
    let (status, _, got) = get_raw(&api_b, &url_of(&img, "url"), Some(&tb), &[]).await;
    assert_eq!((status, got), (200, png(30, 20)));
}
