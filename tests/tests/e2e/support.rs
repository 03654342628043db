//! Helpers shared by the end-to-end tests: the HTTP client, the set-up
//! most tests start from, and the assertions of the API's conventions.

pub use chat_tests::{NodeProcess, ServerOptions, TEST_JWT_SECRET, TestDb, TestServer};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

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

    /// Registers with `body` (which holds `username` and `password`) and
    /// logs in with them; returns (user, tokens).
    pub async fn register_and_login(&self, body: Value) -> (Value, Value) {
        let (status, user) = self
            .call("POST", "/api/auth/register/", None, Some(body.clone()))
            .await;
        let username = &body["username"];
        assert_eq!(status, 201, "register {username}: {user}");
        let (status, tokens) = self
            .call(
                "POST",
                "/api/auth/token/",
                None,
                Some(json!({"username": username, "password": body["password"]})),
            )
            .await;
        assert_eq!(status, 200, "login {username}: {tokens}");
        (user, tokens)
    }

    /// Registers `username` (password "password123") with the `extra`
    /// fields (names, avatar) and logs in; returns (user, access token).
    pub async fn user_with(&self, username: &str, extra: Value) -> (Value, String) {
        let mut body = json!({"username": username, "password": "password123"});
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        let (user, tokens) = self.register_and_login(body).await;
        (user, tokens["access"].as_str().expect("access").to_owned())
    }

    /// Registers `username` (password "password123") and logs in; returns (user, access token).
    pub async fn user(&self, username: &str) -> (Value, String) {
        self.user_with(username, json!({})).await
    }

    /// Sends `content` over HTTP; asserts 201 and returns the message object.
    pub async fn send_message(&self, token: &str, conversation: i64, content: &str) -> Value {
        let body = json!({"conversation_id": conversation, "content": content});
        let (status, msg) = self
            .call("POST", "/api/chat/messages/", Some(token), Some(body))
            .await;
        assert_eq!(status, 201, "{msg}");
        msg
    }

    /// How many messages the conversation holds, as `token`'s user reads it.
    pub async fn history_len(&self, token: &str, conversation: i64) -> usize {
        let path = format!("/api/chat/conversations/{conversation}/messages/");
        let (status, page) = self.call("GET", &path, Some(token), None).await;
        assert_eq!(status, 200, "{page}");
        usize::try_from(page["count"].as_u64().expect("count")).expect("count fits")
    }

    /// Marks everything of the other participant read over HTTP; asserts
    /// 200 and returns the answer.
    pub async fn mark_read(&self, token: &str, conversation: i64) -> Value {
        let path = format!("/api/chat/conversations/{conversation}/mark_read/");
        let (status, read) = self.call("POST", &path, Some(token), None).await;
        assert_eq!(status, 200, "{read}");
        read
    }

    /// `token`'s user asks user `addressee_id` to connect; asserts 201 and
    /// returns the connection.
    pub async fn request(&self, token: &str, addressee_id: i64) -> Value {
        let body = json!({"user_id": addressee_id});
        let (status, conn) = self
            .call("POST", "/api/connections/", Some(token), Some(body))
            .await;
        assert_eq!(status, 201, "{conn}");
        conn
    }

    /// `token`'s user accepts connection `id`; asserts 200 and returns it.
    pub async fn accept(&self, token: &str, id: i64) -> Value {
        let path = format!("/api/connections/{id}/accept/");
        let (status, conn) = self.call("POST", &path, Some(token), None).await;
        assert_eq!(status, 200, "{conn}");
        conn
    }

    /// The requester asks user `addressee_id`, who accepts; returns
    /// (conversation id, connection id).
    pub async fn connect(
        &self,
        requester_token: &str,
        addressee_token: &str,
        addressee_id: i64,
    ) -> (i64, i64) {
        let requested = self.request(requester_token, addressee_id).await;
        let connection = assert_id(&requested["id"]);
        let accepted = self.accept(addressee_token, connection).await;
        let conversation = accepted["conversation_id"]
            .as_i64()
            .expect("accepted connection has a conversation");
        (conversation, connection)
    }

    /// Two users with an accepted connection; returns (token a, token b, conversation id, a's id, b's id).
    pub async fn pair(&self, a: &str, b: &str) -> (String, String, i64, i64, i64) {
        let (ua, ta) = self.user(a).await;
        let (ub, tb) = self.user(b).await;
        let (a_id, b_id) = (assert_id(&ua["id"]), assert_id(&ub["id"]));
        let (conv, _) = self.connect(&ta, &tb, b_id).await;
        (ta, tb, conv, a_id, b_id)
    }
}

/// The set-up most tests start from, alice and bob connected on a fresh
/// server: (server, its client, alice's token, bob's token, their
/// conversation, alice's id, bob's id). Bind the server to a name
/// (`_server` if unused): a server bound to `_` stops at once.
pub async fn pair_server() -> (TestServer, Api, String, String, i64, i64, i64) {
    pair_on(TestServer::start().await).await
}

/// [`pair_server`] on `server` (one with settings of its own, or one node of several).
pub async fn pair_on(server: TestServer) -> (TestServer, Api, String, String, i64, i64, i64) {
    let api = Api::new(&server);
    let (ta, tb, conv, a, b) = api.pair("alice", "bob").await;
    (server, api, ta, tb, conv, a, b)
}

// ------------------------------------------------------------ several nodes

/// Two nodes on one database and one Redis (`redis`, else
/// `TEST_REDIS_URL`), or `None` (with a note) when the run has no Redis.
pub async fn two_nodes(redis: Option<String>) -> Option<(TestServer, TestServer)> {
    let redis = redis.or_else(chat_tests::redis_url);
    let Some(redis) = redis else {
        eprintln!("skipped: multi-node tests need TEST_REDIS_URL");
        return None;
    };
    let db = Arc::new(TestDb::new().await);
    let options = node_options(redis);
    let a = TestServer::start_on(db.clone(), options.clone()).await;
    let b = TestServer::start_on(db, options).await;
    Some((a, b))
}

/// Two nodes on one database and a Redis of the test's own, to kill and
/// restart; `None` (with a note) when the run has no PostgreSQL (two SQLite
/// nodes would not share a database) or no redis-server.
pub async fn two_nodes_on_private_redis() -> Option<(PrivateRedis, TestServer, TestServer)> {
    if chat_tests::pg_base_url().is_none() {
        eprintln!("skipped: the Redis-kill tests need TEST_DATABASE_URL");
        return None;
    }
    let redis = PrivateRedis::start().await?;
    let (a, b) = two_nodes(Some(redis.url()))
        .await
        .expect("a Redis URL was given");
    Some((redis, a, b))
}

/// Options for nodes that work together: one Redis, one channel prefix.
pub fn node_options(redis: String) -> ServerOptions {
    ServerOptions {
        redis_cluster_nodes: None,
        redis_url: Some(redis),
        channel_prefix: Some(format!("{}:", chat_tests::unique_name("mn"))),
        env: vec![],
    }
}

/// A redis-server of the test's own on a free port, to kill and restart;
/// killed on drop.
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one and waits until it takes connections; `None` (with a
    /// note) when redis-server is not installed.
    pub async fn start() -> Option<PrivateRedis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart().await;
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: connections drop, nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis");
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and waits until it takes connections.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis on {} did not come up", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------- the API's conventions

/// Asserts an error response: the expected status and exactly the body
/// `{"detail", "code"}` (plus `fields` for validation errors).
pub fn assert_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "status; body: {body}");
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not a JSON object: {body}"));
    let detail = obj["detail"].as_str().unwrap_or("");
    assert!(
        !detail.is_empty(),
        "detail must be a non-empty string: {body}"
    );
    let code = obj["code"].as_str().unwrap_or("");
    assert!(
        !code.is_empty()
            && code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "code must be a machine code: {body}"
    );
    for key in obj.keys() {
        assert!(
            ["detail", "code", "fields"].contains(&key.as_str()),
            "unexpected key {key} in error body {body}"
        );
    }
    if let Some(fields) = obj.get("fields") {
        let fields = fields
            .as_object()
            .unwrap_or_else(|| panic!("fields must be an object: {body}"));
        assert!(
            !fields.is_empty(),
            "fields, when present, names fields: {body}"
        );
        for (name, messages) in fields {
            let messages = messages
                .as_array()
                .unwrap_or_else(|| panic!("fields.{name} must be a list: {body}"));
            assert!(!messages.is_empty(), "fields.{name} is empty: {body}");
            assert!(
                messages
                    .iter()
                    .all(|m| m.as_str().is_some_and(|s| !s.is_empty())),
                "fields.{name} must hold messages: {body}"
            );
        }
    }
}

/// Asserts an error response with a given code.
pub fn assert_error_code(status: u16, body: &Value, expected: u16, code: &str) {
    assert_error(status, body, expected);
    assert_eq!(body["code"], code, "{body}");
}

/// Asserts a 400 validation error naming `field`.
pub fn assert_field_error(status: u16, body: &Value, field: &str) {
    assert_error(status, body, 400);
    assert!(
        body["fields"][field]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "expected a message for field {field}: {body}"
    );
}

/// Asserts an RFC 3339 UTC timestamp with a `Z` suffix, within a minute of now.
pub fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp must be a string: {value}"));
    assert!(text.ends_with('Z'), "timestamp must end in Z: {text}");
    assert!(
        text.len() >= 20 && text.as_bytes()[10] == b'T',
        "timestamp must be RFC 3339: {text}"
    );
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("timestamp {text} is not RFC 3339: {e}"));
    assert_eq!(parsed.offset().local_minus_utc(), 0, "{text}");
    let age = chrono::Utc::now().signed_duration_since(parsed);
    assert!(
        age.num_seconds().abs() < 60,
        "timestamp {text} is not close to now (the server's clock is UTC)"
    );
}

/// Asserts a positive integer id and returns it.
pub fn assert_id(value: &Value) -> i64 {
    let id = value
        .as_u64()
        .unwrap_or_else(|| panic!("id must be a positive integer: {value}"));
    assert!(id > 0, "id must be positive: {value}");
    i64::try_from(id).expect("id fits i64")
}

/// Asserts exactly the user object's keys and types.
pub fn assert_user_object(user: &Value) {
    let obj = user.as_object().unwrap_or_else(|| panic!("user: {user}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "avatar",
            "first_name",
            "id",
            "last_name",
            "name",
            "username"
        ],
        "{user}"
    );
    assert_id(&user["id"]);
    for k in ["username", "first_name", "last_name", "name"] {
        assert!(user[k].is_string(), "{k}: {user}");
    }
    assert!(
        user["avatar"].is_null()
            || user["avatar"]
                .as_str()
                .is_some_and(|a| a.starts_with("http://") || a.starts_with("https://")),
        "{user}"
    );
}

/// The caller's own object (`/api/users/me/`) for a user object: the user
/// object plus the caller's settings, at their defaults.
pub fn me_view(user: &Value) -> Value {
    let mut me = user.clone();
    me["share_presence"] = json!(true);
    me
}

/// The user object within the caller's own object (settings left out).
pub fn user_object(me: &Value) -> Value {
    let mut user = me.clone();
    if let Some(obj) = user.as_object_mut() {
        obj.remove("share_presence");
    }
    user
}
