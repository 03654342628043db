//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

pub use chat_tests::{ServerOptions, TEST_JWT_SECRET, TestDb, TestServer};
use serde_json::{Value, json};

/// An HTTP client for one server.
#[derive(Debug, Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.url(""),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and JSON (Null when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Registers `username` (password "password123") and logs in; returns (user, access token).
    pub async fn user(&self, username: &str) -> (Value, String) {
        let (status, user) = self
            .call(
                "POST",
                "/api/auth/register/",
                None,
                Some(json!({"username": username, "password": "password123"})),
            )
            .await;
        assert_eq!(status, 201, "register {username}: {user}");
        let (status, tokens) = self
            .call(
                "POST",
                "/api/auth/token/",
                None,
                Some(json!({"username": username, "password": "password123"})),
            )
            .await;
        assert_eq!(status, 200, "login {username}: {tokens}");
        (user, tokens["access"].as_str().expect("access").to_owned())
    }

    /// Two users with an accepted connection; returns (token a, token b, conversation id, a's id, b's id).
    pub async fn pair(&self, a: &str, b: &str) -> (String, String, i64, i64, i64) {
        let (ua, ta) = self.user(a).await;
        let (ub, tb) = self.user(b).await;
        let (status, conn) = self
            .call(
                "POST",
                "/api/connections/",
                Some(&ta),
                Some(json!({"user_id": ub["id"]})),
            )
            .await;
        assert_eq!(status, 201, "{conn}");
        let path = format!("/api/connections/{}/accept/", conn["id"]);
        let (status, conn) = self.call("POST", &path, Some(&tb), None).await;
        assert_eq!(status, 200, "{conn}");
        let conv = conn["conversation_id"].as_i64().expect("conversation id");
        (
            ta,
            tb,
            conv,
            ua["id"].as_i64().expect("id"),
            ub["id"].as_i64().expect("id"),
        )
    }
}
