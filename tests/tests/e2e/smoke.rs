//! The server starts on the configured backends and serves health checks.

use crate::support::*;

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (status, body) = api.call("GET", "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = api.call("GET", "/readyz/", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"], "ok");
}

#[tokio::test]
async fn pair_can_chat_over_http() {
    let (_server, api, ta, tb, conv, _, _) = pair_server().await;
    let msg = api.send_message(&ta, conv, " hi ").await;
    assert_eq!(msg["content"], "hi");
    let (status, list) = api
        .call("GET", "/api/chat/conversations/", Some(&tb), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["results"][0]["unread_count"], 1);
}
