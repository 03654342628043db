//! The REST side: a loopback-only HTTP client and the setup steps every
//! scenario shares (register, log in, connect pairs), with bounded concurrency.

use crate::Result;
use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Batches of users created so far by this process.
static BATCH: AtomicU64 = AtomicU64::new(0);

/// Setup requests the server answered with a 5xx and that were retried.
static RETRIES: AtomicU64 = AtomicU64::new(0);
/// The first few of those answers, to report.
static RETRY_ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Attempts of one setup POST that the server answers with a 5xx.
const SETUP_ATTEMPTS: u32 = 3;

/// Setup requests retried so far, and the first few answers that made them.
pub fn setup_retries() -> (u64, Vec<String>) {
    let errors = RETRY_ERRORS.lock().map(|e| e.clone()).unwrap_or_default();
    (RETRIES.load(Ordering::Relaxed), errors)
}

/// Password of every benchmark user (cost is set on the server side).
const PASSWORD: &str = "bench-password-1";

/// True when `host` names this machine's loopback: 127.0.0.0/8, ::1, localhost.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.octets()[0] == 127,
        Ok(IpAddr::V6(v6)) => v6.is_loopback(),
        Err(_) => false,
    }
}

/// Checks a `postgres://` URL points at this machine (or a local socket).
pub fn check_database_url(url: &str) -> Result<()> {
    let parsed = Url::parse(url).map_err(|e| format!("--database-url: {e}"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err("--database-url must be postgres://...".into());
    }
    match parsed.host_str() {
        None | Some("") => Ok(()),
        Some(h) if is_loopback_host(h) => Ok(()),
        Some(h) => Err(format!(
            "refusing database host '{h}': only loopback addresses (127.0.0.0/8, ::1, localhost)"
        )
        .into()),
    }
}

/// A benchmark user with a fresh access token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub token: String,
}

/// Two connected users and their conversation; `a` sent the request.
#[derive(Debug, Clone)]
pub struct Pair {
    pub a: User,
    pub b: User,
    pub conversation: i64,
}

/// HTTP client for one server.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    /// Run tag: part of every username, so runs never collide.
    pub tag: String,
}

impl Api {
    /// A client for `url`, which must be `http://<loopback>:port`.
    pub fn new(url: &str, tag: String) -> Result<Self> {
        let base = Url::parse(url).map_err(|e| format!("--url: {e}"))?;
        if base.scheme() != "http" {
            return Err("--url must be http://127.0.0.1:PORT (plain HTTP, loopback)".into());
        }
        let host = base.host_str().unwrap_or_default();
        if !is_loopback_host(host) {
            return Err(format!(
                "refusing host '{host}': the benchmark only targets loopback addresses (127.0.0.0/8, ::1, localhost)"
            )
            .into());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { http, base, tag })
    }

    /// The HTTP client (for requests the helpers here do not make).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Absolute URL of a path (with query) on the server.
    pub fn url(&self, path: &str) -> Result<Url> {
        Ok(self.base.join(path)?)
    }

    /// The server's IPv4 address, when the URL names one (or localhost).
    pub fn server_v4(&self) -> Option<SocketAddr> {
        let port = self.base.port_or_known_default()?;
        let host = self.base.host_str()?;
        let ip = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse().ok()?
        };
        Some(SocketAddr::new(IpAddr::V4(ip), port))
    }

    /// The WebSocket URL of a conversation for a token.
    pub fn ws_url(&self, conversation: i64, token: &str) -> Result<String> {
        let mut u = self.url(&format!("/ws/chat/{conversation}/"))?;
        u.set_scheme("ws")
            .map_err(|()| "cannot build the ws:// URL".to_owned())?;
        u.query_pairs_mut().append_pair("token", token);
        Ok(u.to_string())
    }

    /// The URL of the user stream for a token, resuming after `since`.
    pub fn stream_url(&self, token: &str, since: Option<i64>) -> Result<String> {
        let mut u = self.url("/ws/chat/")?;
        u.set_scheme("ws")
            .map_err(|()| "cannot build the ws:// URL".to_owned())?;
        u.query_pairs_mut().append_pair("token", token);
        if let Some(since) = since {
            u.query_pairs_mut().append_pair("since", &since.to_string());
        }
        Ok(u.to_string())
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self.http.post(self.url(path)?).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// A setup POST that must succeed. A 5xx answer (the server says
    /// nothing was done) is retried with a growing pause, up to
    /// [`SETUP_ATTEMPTS`] times; each retry is counted and reported, since
    /// it is the server failing under the setup's load, not the benchmark.
    async fn post_ok(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Value> {
        let mut pause = Duration::from_millis(50);
        for attempt in 1..=SETUP_ATTEMPTS {
            let (status, value) = self.post(path, token, body).await?;
            if status.is_success() {
                return Ok(value);
            }
            let error = format!("POST {path} answered {status}: {value}");
            if !status.is_server_error() || attempt == SETUP_ATTEMPTS {
                return Err(error.into());
            }
            RETRIES.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut errors) = RETRY_ERRORS.lock()
                && errors.len() < 3
            {
                errors.push(error);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        Err(format!("POST {path}: no attempts").into())
    }

    /// A GET whose body is read and dropped; the time it took. Any status
    /// but 200 is an error.
    pub async fn get_timed(&self, path: &str, token: &str) -> Result<Duration> {
        let url = self.url(path)?;
        let started = Instant::now();
        let resp = self.http.get(url).bearer_auth(token).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let took = started.elapsed();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body);
            return Err(format!("GET {path} answered {status}: {text}").into());
        }
        Ok(took)
    }

    /// A GET returning JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> Result<Value> {
        let resp = self
            .http
            .get(self.url(path)?)
            .bearer_auth(token)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if status != StatusCode::OK {
            return Err(format!("GET {path} answered {status}: {text}").into());
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// GET /readyz/ answers 200; another `path` (a server without
    /// /readyz/, such as the Django reference) answers anything below 500.
    pub async fn ready(&self, path: &str) -> Result<()> {
        let resp = self.http.get(self.url(path)?).send().await?;
        let up = match path {
            "/readyz/" => resp.status() == StatusCode::OK,
            _ => !resp.status().is_server_error(),
        };
        if up {
            Ok(())
        } else {
            Err(format!("{path} answered {}", resp.status()).into())
        }
    }

    /// Registers and logs in one user.
    pub async fn create_user(&self, username: String) -> Result<User> {
        let created = self
            .post_ok(
                "/api/auth/register/",
                None,
                &json!({"username": username, "password": PASSWORD}),
            )
            .await?;
        let id = created["id"]
            .as_i64()
            .ok_or_else(|| format!("register: no id in {created}"))?;
        let token = self.login(&username).await?;
        Ok(User {
            id,
            username,
            token,
        })
    }

    /// A fresh access token for a benchmark user.
    pub async fn login(&self, username: &str) -> Result<String> {
        let tokens = self
            .post_ok(
                "/api/auth/token/",
                None,
                &json!({"username": username, "password": PASSWORD}),
            )
            .await?;
        Ok(tokens["access"]
            .as_str()
            .ok_or_else(|| format!("token: no access in {tokens}"))?
            .to_owned())
    }

    /// `a` requests `b`, `b` accepts: the conversation id.
    pub async fn connect(&self, a: &User, b: &User) -> Result<i64> {
        let conn = self
            .post_ok(
                "/api/connections/",
                Some(&a.token),
                &json!({"user_id": b.id}),
            )
            .await?;
        let conn_id = conn["id"]
            .as_i64()
            .ok_or_else(|| format!("connection: no id in {conn}"))?;
        let accepted = self
            .post_ok(
                &format!("/api/connections/{conn_id}/accept/"),
                Some(&b.token),
                &json!({}),
            )
            .await?;
        Ok(accepted["conversation_id"]
            .as_i64()
            .ok_or_else(|| format!("accept: no conversation_id in {accepted}"))?)
    }

    /// Sends a message over HTTP; its id.
    pub async fn send_message(&self, user: &User, conversation: i64, content: &str) -> Result<i64> {
        let msg = self
            .post_ok(
                "/api/chat/messages/",
                Some(&user.token),
                &json!({"conversation_id": conversation, "content": content}),
            )
            .await?;
        Ok(msg["id"]
            .as_i64()
            .ok_or_else(|| format!("message: no id in {msg}"))?)
    }

    /// `n` new users named `<prefix><tag>b<batch>_<i>`, `concurrency` at a
    /// time, in order. Each call is a new batch, so names never repeat.
    pub async fn create_users(
        &self,
        prefix: &str,
        n: usize,
        concurrency: usize,
    ) -> Result<Vec<User>> {
        let batch = BATCH.fetch_add(1, Ordering::Relaxed);
        bounded(n, concurrency, |i| {
            self.create_user(format!("{prefix}{}b{batch}_{i}", self.tag))
        })
        .await
    }

    /// `n` connected pairs of new users.
    pub async fn create_pairs(
        &self,
        prefix: &str,
        n: usize,
        concurrency: usize,
    ) -> Result<Vec<Pair>> {
        let users = self.create_users(prefix, n * 2, concurrency).await?;
        let couples: Vec<(User, User)> = users
            .chunks_exact(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        bounded(n, concurrency, |i| {
            let (a, b) = couples[i].clone();
            async move {
                let conversation = self.connect(&a, &b).await?;
                Ok(Pair { a, b, conversation })
            }
        })
        .await
    }
}

/// Runs `f(0..n)` with at most `concurrency` in flight; results in order;
/// stops at the first error.
pub async fn bounded<T, F, Fut>(n: usize, concurrency: usize, f: F) -> Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    stream::iter(0..n)
        .map(f)
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_pass() {
        for ok in [
            "127.0.0.1",
            "127.3.2.1",
            "localhost",
            "LOCALHOST",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "10.0.0.1",
            "192.168.1.1",
            "example.com",
            "0.0.0.0",
            "::",
            "128.0.0.1",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
        assert!(Api::new("http://127.0.0.1:8000", "t".into()).is_ok());
        assert!(Api::new("http://[::1]:8000", "t".into()).is_ok());
        let server = Api::new("http://localhost:8123", "t".into()).map(|a| a.server_v4());
        assert_eq!(server.ok().flatten(), "127.0.0.1:8123".parse().ok());
        let v6 = Api::new("http://[::1]:8000", "t".into()).map(|a| a.server_v4());
        assert_eq!(v6.ok().flatten(), None);
        assert!(Api::new("http://10.1.1.1:8000", "t".into()).is_err());
        assert!(Api::new("https://127.0.0.1:8000", "t".into()).is_err());
        assert!(check_database_url("postgres://postgres@127.0.0.1:5432/x").is_ok());
        assert!(check_database_url("postgres://postgres@db.example:5432/x").is_err());
    }

    #[test]
    fn ws_url_carries_the_token() -> Result<()> {
        let api = Api::new("http://127.0.0.1:8000", "t".into())?;
        assert_eq!(
            api.ws_url(5, "a.b.c")?,
            "ws://127.0.0.1:8000/ws/chat/5/?token=a.b.c"
        );
        assert_eq!(
            api.stream_url("a.b.c", Some(7))?,
            "ws://127.0.0.1:8000/ws/chat/?token=a.b.c&since=7"
        );
        assert_eq!(
            api.stream_url("a.b.c", None)?,
            "ws://127.0.0.1:8000/ws/chat/?token=a.b.c"
        );
        Ok(())
    }
}
