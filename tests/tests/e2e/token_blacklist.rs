//! `POST /api/auth/token/blacklist/` (log out) as SimpleJWT answers it.

use crate::support::*;
use serde_json::{Value, json};

/// POSTs `{"refresh": token}` to `/api/auth/token/{what}/`.
async fn with_refresh(api: &Api, what: &str, token: &Value) -> (u16, Value) {
    let path = format!("/api/auth/token/{what}/");
    api.call("POST", &path, None, Some(json!({"refresh": token})))
        .await
}

#[tokio::test]
async fn a_blacklisted_refresh_token_is_refused_from_then_on() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, tokens) = api
        .register_and_login(json!({"username": "leaver", "password": "long enough pw"}))
        .await;
    let refresh = tokens["refresh"].as_str().expect("refresh").to_owned();
    let access = tokens["access"].as_str().expect("access").to_owned();
    let (_, other) = api
        .call(
            "POST",
            "/api/auth/token/",
            None,
            Some(json!({"username": "leaver", "password": "long enough pw"})),
        )
        .await;

    let (status, body) = with_refresh(&api, "blacklist", &json!(refresh)).await;
    assert_eq!((status, &body), (200, &json!({})));

    let (status, body) = with_refresh(&api, "refresh", &json!(refresh)).await;
    assert_error_code(status, &body, 401, "token_not_valid");
    let (status, body) = with_refresh(&api, "blacklist", &json!(refresh)).await;
    assert_error_code(status, &body, 401, "token_not_valid");
    assert_eq!(body["detail"], "Token is blacklisted");

    // Only that token: another session's refresh token still works, and
    // the access token lives until it expires.
    let (status, body) = with_refresh(&api, "refresh", &other["refresh"]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api.call("GET", "/api/users/me/", Some(&access), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn blacklisting_refuses_what_is_not_a_refresh_token() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, tokens) = api
        .register_and_login(json!({"username": "tester", "password": "long enough pw"}))
        .await;
    let path = "/api/auth/token/blacklist/";
    let (status, body) = api.call("POST", path, None, Some(json!({}))).await;
    assert_field_error(status, &body, "refresh");
    let (status, body) = with_refresh(&api, "blacklist", &json!("not.a.token")).await;
    assert_error_code(status, &body, 401, "token_not_valid");
    let (status, body) = api
        .call(
            "POST",
            path,
            None,
            Some(json!({"refresh": tokens["access"]})),
        )
        .await;
    assert_error_code(status, &body, 401, "token_not_valid");
    let (status, body) = api.call("GET", path, None, None).await;
    assert_error(status, &body, 405);
    // Nothing was blacklisted by the refusals.
    let (status, _) = with_refresh(&api, "refresh", &tokens["refresh"]).await;
    assert_eq!(status, 200);
}
