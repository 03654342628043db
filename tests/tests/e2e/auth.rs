//! API.md "Users and tokens": registration, login, refresh, token checks
//! (SimpleJWT compatibility, forgeries), and the user routes.

use crate::support::*;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

/// Unpadded base64url, as JWTs use.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims djangorestframework-simplejwt writes.
pub(crate) fn simplejwt_claims(user_id: Value, token_type: &str, lifetime: i64) -> Value {
    let iat = now();
    json!({
        "token_type": token_type,
        "exp": iat + lifetime,
        "iat": iat,
        "jti": jti(),
        "user_id": user_id,
    })
}

/// A fresh token id, 32 hex digits like SimpleJWT's `uuid4().hex`.
fn jti() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{:016x}{:016x}", nanos.unsigned_abs(), n)
}

/// Signs `claims` with `alg` and `key`.
pub(crate) fn mint_with(claims: &Value, alg: Algorithm, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).expect("encode")
}

/// A token as a Django service using SimpleJWT with the shared key would mint it.
pub(crate) fn mint(claims: &Value) -> String {
    mint_with(claims, Algorithm::HS256, TEST_JWT_SECRET.as_bytes())
}

/// An unsigned token (`alg: none`).
fn unsigned(claims: &Value, alg: &str) -> String {
    let header = json!({"alg": alg, "typ": "JWT"}).to_string();
    format!(
        "{}.{}.",
        b64url(header.as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// Checks a server-minted token against the shared key; returns its claims.
fn decode_claims(token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.alg, Algorithm::HS256);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
        &validation,
    )
    .expect("signed with the shared key")
    .claims
}

/// `user_id` as SimpleJWT writes it (string of digits) or older versions (number).
fn claim_user_id(claims: &Value) -> i64 {
    match &claims["user_id"] {
        Value::String(s) => {
            assert!(s.chars().all(|c| c.is_ascii_digit()), "{claims}");
            s.parse().expect("digits")
        }
        Value::Number(n) => n.as_i64().expect("integer"),
        other => panic!("user_id claim: {other}"),
    }
}

async fn register(api: &Api, body: Value) -> (u16, Value) {
    api.call("POST", "/api/auth/register/", None, Some(body))
        .await
}

async fn login(api: &Api, username: &str, password: &str) -> (u16, Value) {
    api.call(
        "POST",
        "/api/auth/token/",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

/// Registers and logs in; returns (user, access, refresh).
async fn account(api: &Api, username: &str) -> (Value, String, String) {
    let (user, tokens) = api
        .register_and_login(json!({"username": username, "password": "password123"}))
        .await;
    (
        user,
        tokens["access"].as_str().expect("access").to_owned(),
        tokens["refresh"].as_str().expect("refresh").to_owned(),
    )
}

/// Asserts that no password (key or value) appears in `body`.
fn assert_no_password(body: &Value, password: &str) {
    let text = body.to_string();
    assert!(!text.contains(password), "the password leaks: {text}");
    assert!(
        !text.contains("password_hash") && !text.contains("$argon2"),
        "{text}"
    );
    // Keys only: an error may name the `password` field in `fields`.
    fn walk(v: &Value, in_fields: bool) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    assert!(
                        in_fields || !k.contains("password"),
                        "a password field: {k}"
                    );
                    walk(v, !in_fields && k == "fields");
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, false)),
            _ => {}
        }
    }
    walk(body, false);
}

#[tokio::test]
async fn register_returns_the_user_object() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (status, user) = register(
        &api,
        json!({"username": "jdoe", "password": "password123", "first_name": "John",
               "last_name": "Doe", "avatar": "https://example.com/a.png"}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert_user_object(&user);
    let id = user["id"].clone();
    assert_eq!(
        user,
        json!({"id": id, "username": "jdoe", "first_name": "John", "last_name": "Doe",
               "name": "John Doe", "avatar": "https://example.com/a.png"})
    );
    // The same object is what the user routes show.
    let (status, tokens) = login(&api, "jdoe", "password123").await;
    assert_eq!(status, 200);
    let access = tokens["access"].as_str().expect("access");
    let (status, me) = api.call("GET", "/api/users/me/", Some(access), None).await;
    assert_eq!((status, &me), (200, &me_view(&user)));
}

#[tokio::test]
async fn name_is_first_and_last_or_the_username() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let cases = [
        (
            json!({"first_name": "John", "last_name": "Doe"}),
            "John Doe",
        ),
        (json!({"first_name": "John"}), "John"),
        (json!({"last_name": "Doe"}), "Doe"),
        (json!({"first_name": "", "last_name": ""}), "{username}"),
        (json!({}), "{username}"),
    ];
    for (i, (names, expected)) in cases.into_iter().enumerate() {
        let username = format!("user_{i}");
        let mut body = names.clone();
        body["username"] = json!(username);
        body["password"] = json!("password123");
        let (status, user) = register(&api, body).await;
        assert_eq!(status, 201, "{user}");
        assert_user_object(&user);
        let expected = expected.replace("{username}", &username);
        assert_eq!(user["name"], expected, "{names}");
        assert_eq!(user["avatar"], Value::Null);
        assert_eq!(
            user["first_name"],
            names["first_name"].as_str().unwrap_or("")
        );
        assert_eq!(user["last_name"], names["last_name"].as_str().unwrap_or(""));
    }
}

#[tokio::test]
async fn avatar_is_a_url_or_null() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (status, user) = register(
        &api,
        json!({"username": "nulled", "password": "password123", "avatar": null}),
    )
    .await;
    assert_eq!((status, &user["avatar"]), (201, &Value::Null), "{user}");
    let (status, user) = register(
        &api,
        json!({"username": "plain", "password": "password123", "avatar": "http://example.com/x.png"}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["avatar"], "http://example.com/x.png");
    for bad in [
        json!("not a url"),
        json!("javascript:alert(1)"),
        json!("ftp://example.com/a.png"),
        json!(42),
    ] {
        let (status, body) = register(
            &api,
            json!({"username": "badavatar", "password": "password123", "avatar": bad}),
        )
        .await;
        assert_field_error(status, &body, "avatar");
    }
    // None of the refused ones was created.
    let (status, body) = register(
        &api,
        json!({"username": "badavatar", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Found by the property-based tester: the document says `format: uri`
/// (RFC 3986), and the server took `https://Â` and answered it back in
/// every user object. Avatars are URIs now, on registration and update;
/// blank still means none.
#[tokio::test]
async fn avatars_are_rfc_3986_uris() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, token) = api.user("alice").await;
    let patch = |avatar: Value| {
        api.call(
            "PATCH",
            "/api/users/me/",
            Some(&token),
            Some(json!({"avatar": avatar})),
        )
    };
    for good in [
        "https://example.com/caf%C3%A9.png?size=64&v=2#top",
        "http://user:pw@example.com:8080/a;b/c.png",
        "https://[2001:db8::1]/a.png",
    ] {
        let (status, me) = patch(json!(good)).await;
        assert_eq!((status, me["avatar"].as_str()), (200, Some(good)), "{me}");
    }
    for (i, bad) in [
        "https://\u{c2}",
        "https://example.com/caf\u{e9}.png",
        "https://example.com/a b.png",
        " https://example.com/a.png",
        "https://example.com/a.png\n",
        "https://example.com/%zz.png",
        "https://example.com/a|b.png",
        "https://exa]mple.com/",
        "https://example.com:port/",
        "https://example.com/a#b#c",
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = patch(json!(bad)).await;
        assert_field_error(status, &body, "avatar");
        let (status, body) = register(
            &api,
            json!({"username": format!("bad{i}"), "password": "password123", "avatar": bad}),
        )
        .await;
        assert_field_error(status, &body, "avatar");
    }
    // Blank is none, as empty and null are.
    let (status, me) = patch(json!(" \t")).await;
    assert_eq!((status, &me["avatar"]), (200, &Value::Null), "{me}");
}

#[tokio::test]
async fn username_rules() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let good = [
        "abc".to_owned(),
        "a".repeat(150),
        "a@b.c+d-e_f".to_owned(),
        "user.name+tag@example.com".to_owned(),
        "Ünïcödé".to_owned(),
        "123".to_owned(),
    ];
    for name in good {
        let (status, user) =
            register(&api, json!({"username": name, "password": "password123"})).await;
        assert_eq!(status, 201, "{name}: {user}");
        assert_eq!(user["username"], name.as_str());
        let (status, tokens) = login(&api, &name, "password123").await;
        assert_eq!(status, 200, "{name}: {tokens}");
    }
    let bad = [
        json!("ab"),
        json!(""),
        json!("a".repeat(151)),
        json!("with space"),
        json!("slash/y"),
        json!("bang!"),
        json!("quote'"),
        json!("tab\tx"),
        json!("semi;colon"),
        json!(123),
        json!(["abc"]),
        json!(null),
    ];
    for name in bad {
        let (status, body) =
            register(&api, json!({"username": name, "password": "password123"})).await;
        assert_field_error(status, &body, "username");
    }
    let (status, body) = register(&api, json!({"password": "password123"})).await;
    assert_field_error(status, &body, "username");
}

#[tokio::test]
async fn usernames_are_unique_case_insensitively() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (status, first) = register(
        &api,
        json!({"username": "Alice", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    for taken in ["Alice", "alice", "ALICE", "aLiCe"] {
        let (status, body) = register(
            &api,
            json!({"username": taken, "password": "another-password"}),
        )
        .await;
        assert_error(status, &body, 409);
    }
    // The original account is untouched by the refused attempts.
    let (status, tokens) = login(&api, "Alice", "password123").await;
    assert_eq!(status, 200, "{tokens}");
    let (status, body) = login(&api, "Alice", "another-password").await;
    assert_error_code(status, &body, 401, "invalid_credentials");
    let (status, other) = register(
        &api,
        json!({"username": "Alice2", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    // Racing registrations of one name in two cases: exactly one wins.
    for round in 0..5 {
        let (r1, r2) = tokio::join!(
            register(
                &api,
                json!({"username": format!("Zed{round}"), "password": "password123"})
            ),
            register(
                &api,
                json!({"username": format!("zED{round}"), "password": "password123"})
            ),
        );
        let mut statuses = [r1.0, r2.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "{} {}", r1.1, r2.1);
        let loser = if r1.0 == 409 { &r1.1 } else { &r2.1 };
        assert_error(409, loser, 409);
    }
}

#[tokio::test]
async fn passwords_have_at_least_8_characters() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for short in ["", "a", "1234567", "seven77"] {
        let (status, body) = register(&api, json!({"username": "bob", "password": short})).await;
        assert_field_error(status, &body, "password");
    }
    for bad in [json!(null), json!(12345678), json!(["password123"])] {
        let (status, body) = register(&api, json!({"username": "bob", "password": bad})).await;
        assert_field_error(status, &body, "password");
    }
    let (status, body) = register(&api, json!({"username": "bob"})).await;
    assert_field_error(status, &body, "password");
    let (status, body) = register(&api, json!({"username": "bob", "password": "12345678"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = login(&api, "bob", "12345678").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn passwords_never_appear_in_responses() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let secret = "Sup3r-Secret-Passw0rd";
    let (status, user) = register(&api, json!({"username": "alice", "password": secret})).await;
    assert_eq!(status, 201);
    assert_no_password(&user, secret);
    let (status, tokens) = login(&api, "alice", secret).await;
    assert_eq!(status, 200);
    assert_no_password(&tokens, secret);
    let access = tokens["access"].as_str().expect("access").to_owned();
    for token in [tokens["access"].as_str(), tokens["refresh"].as_str()] {
        let claims = decode_claims(token.expect("token"));
        assert_no_password(&claims, secret);
    }
    let (_, me) = api.call("GET", "/api/users/me/", Some(&access), None).await;
    assert_no_password(&me, secret);
    let (_, patched) = api
        .call(
            "PATCH",
            "/api/users/me/",
            Some(&access),
            Some(json!({"first_name": "A", "password": "changed-password"})),
        )
        .await;
    assert_no_password(&patched, secret);
    assert_no_password(&patched, "changed-password");
    let (bob, _) = api.user("bob").await;
    let (status, conn) = api
        .call(
            "POST",
            "/api/connections/",
            Some(&access),
            Some(json!({"user_id": bob["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{conn}");
    assert_no_password(&conn, secret);
    let (_, list) = api
        .call("GET", "/api/connections/", Some(&access), None)
        .await;
    assert_no_password(&list, secret);
    // Nor in errors about them.
    let (_, err) = register(&api, json!({"username": "carol", "password": "short77"})).await;
    assert_no_password(&err, "short77");
    let (_, err) = register(&api, json!({"username": "alice", "password": secret})).await;
    assert_no_password(&err, secret);
    let (_, err) = login(&api, "alice", "wrong-Passw0rd").await;
    assert_no_password(&err, "wrong-Passw0rd");
}

#[tokio::test]
async fn token_returns_access_and_refresh() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (user, _, _) = account(&api, "alice").await;
    let (status, tokens) = login(&api, "alice", "password123").await;
    assert_eq!(status, 200, "{tokens}");
    let mut keys: Vec<&String> = tokens.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["access", "refresh"]);
    let access = decode_claims(tokens["access"].as_str().expect("access"));
    let refresh = decode_claims(tokens["refresh"].as_str().expect("refresh"));
    let id = user["id"].as_i64().expect("id");
    for (claims, kind, lifetime) in [
        (&access, "access", 15 * 60),
        (&refresh, "refresh", 7 * 86_400),
    ] {
        assert_eq!(claims["token_type"], kind, "{claims}");
        assert_eq!(claim_user_id(claims), id);
        let (exp, iat) = (
            claims["exp"].as_i64().expect("exp"),
            claims["iat"].as_i64().expect("iat"),
        );
        assert_eq!(exp - iat, lifetime, "{claims}");
        assert!((iat - now()).abs() < 60, "{claims}");
        assert!(
            claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
            "{claims}"
        );
    }
    assert_ne!(access["jti"], refresh["jti"]);
    // The access token works.
    let (status, me) = api
        .call("GET", "/api/users/me/", tokens["access"].as_str(), None)
        .await;
    assert_eq!((status, &me), (200, &me_view(&user)));
}

#[tokio::test]
async fn token_lifetimes_are_configurable() {
    let server = TestServer::start_with(&[
        ("CHAT__AUTH__ACCESS_TOKEN_MINUTES", "2"),
        ("CHAT__AUTH__REFRESH_TOKEN_DAYS", "1"),
    ])
    .await;
    let api = Api::new(&server);
    let (_, access, refresh) = account(&api, "alice").await;
    let claims = decode_claims(&access);
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        120
    );
    let claims = decode_claims(&refresh);
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        86_400
    );
}

#[tokio::test]
async fn wrong_credentials_are_401_invalid_credentials() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    account(&api, "alice").await;
    for (username, password) in [
        ("alice", "wrong-password"),
        ("alice", "password1234"),
        ("alice", ""),
        ("nobody", "password123"),
        ("nobody", "wrong-password"),
    ] {
        let (status, body) = login(&api, username, password).await;
        assert_error_code(status, &body, 401, "invalid_credentials");
    }
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/token/",
            None,
            Some(json!({"username": "alice"})),
        )
        .await;
    assert_field_error(status, &body, "password");
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/token/",
            None,
            Some(json!({"password": "password123"})),
        )
        .await;
    assert_field_error(status, &body, "username");
}

#[tokio::test]
async fn refresh_gives_a_new_access_token() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (user, access, refresh) = account(&api, "alice").await;
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/token/refresh/",
            None,
            Some(json!({"refresh": refresh})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let new_access = body["access"].as_str().expect("access");
    let claims = decode_claims(new_access);
    assert_eq!(claims["token_type"], "access");
    assert_eq!(claim_user_id(&claims), user["id"].as_i64().expect("id"));
    let (status, me) = api
        .call("GET", "/api/users/me/", Some(new_access), None)
        .await;
    assert_eq!((status, &me), (200, &me_view(&user)));

    // An access token is not a refresh token.
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/token/refresh/",
            None,
            Some(json!({"refresh": access})),
        )
        .await;
    assert_error(status, &body, 401);
    // A refresh token is not an access token.
    let (status, body) = api
        .call("GET", "/api/users/me/", Some(&refresh), None)
        .await;
    assert_error(status, &body, 401);
    // Garbage and forged refresh tokens.
    let forged = mint_with(
        &simplejwt_claims(user["id"].clone(), "refresh", 3600),
        Algorithm::HS256,
        b"not-the-secret",
    );
    let expired = mint(&simplejwt_claims(user["id"].clone(), "refresh", -120));
    for bad in ["garbage", "a.b.c", forged.as_str(), expired.as_str()] {
        let (status, body) = api
            .call(
                "POST",
                "/api/auth/token/refresh/",
                None,
                Some(json!({"refresh": bad})),
            )
            .await;
        assert_error(status, &body, 401);
    }
    let (status, body) = api
        .call("POST", "/api/auth/token/refresh/", None, Some(json!({})))
        .await;
    assert_field_error(status, &body, "refresh");
}

#[tokio::test]
async fn simplejwt_tokens_are_accepted_with_either_user_id_form() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (user, _, _) = account(&api, "alice").await;
    let id = user["id"].as_i64().expect("id");
    for user_id in [json!(id.to_string()), json!(id)] {
        let access = mint(&simplejwt_claims(user_id.clone(), "access", 300));
        let (status, me) = api.call("GET", "/api/users/me/", Some(&access), None).await;
        assert_eq!((status, &me), (200, &me_view(&user)), "user_id {user_id}");
        let refresh = mint(&simplejwt_claims(user_id.clone(), "refresh", 3600));
        let (status, body) = api
            .call(
                "POST",
                "/api/auth/token/refresh/",
                None,
                Some(json!({"refresh": refresh})),
            )
            .await;
        assert_eq!(status, 200, "user_id {user_id}: {body}");
        let (status, me) = api
            .call("GET", "/api/users/me/", body["access"].as_str(), None)
            .await;
        assert_eq!((status, &me), (200, &me_view(&user)));
    }
    // The scheme name is case-insensitive, as in SimpleJWT's header parsing.
    let access = mint(&simplejwt_claims(json!(id.to_string()), "access", 300));
    let res = api
        .http
        .get(api.url("/api/users/me/"))
        .header("authorization", format!("Bearer {access}"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test]
async fn bad_tokens_are_401_with_the_error_body() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (user, access, refresh) = account(&api, "alice").await;
    let id = user["id"].clone();
    let secret = TEST_JWT_SECRET.as_bytes();
    let valid_claims = simplejwt_claims(id.clone(), "access", 300);

    let mut tampered = access.split('.').map(str::to_owned).collect::<Vec<_>>();
    let mut other_claims = valid_claims.clone();
    other_claims["user_id"] = json!("999999");
    tampered[1] = b64url(other_claims.to_string().as_bytes());
    let tampered = tampered.join(".");
    let mut no_type = valid_claims.clone();
    no_type
        .as_object_mut()
        .expect("object")
        .remove("token_type");
    let mut no_exp = valid_claims.clone();
    no_exp.as_object_mut().expect("object").remove("exp");
    let mut no_user = valid_claims.clone();
    no_user.as_object_mut().expect("object").remove("user_id");
    let mut bad_user = valid_claims.clone();
    bad_user["user_id"] = json!("abc");
    let mut odd_type = valid_claims.clone();
    odd_type["token_type"] = json!("sliding");

    let tokens: Vec<(&str, String)> = vec![
        ("garbage", "not-a-token".into()),
        ("two parts", "abc.def".into()),
        ("empty parts", "..".into()),
        ("bad base64", "!!!.???.***".into()),
        ("alg none", unsigned(&valid_claims, "none")),
        ("alg None", unsigned(&valid_claims, "None")),
        (
            "alg none with a signature",
            format!("{}{}", unsigned(&valid_claims, "none"), b64url(b"sig")),
        ),
        (
            "wrong key",
            mint_with(&valid_claims, Algorithm::HS256, b"wrong-secret"),
        ),
        ("empty key", mint_with(&valid_claims, Algorithm::HS256, b"")),
        (
            "HS512 with the key",
            mint_with(&valid_claims, Algorithm::HS512, secret),
        ),
        (
            "HS384 with the key",
            mint_with(&valid_claims, Algorithm::HS384, secret),
        ),
        ("tampered payload", tampered),
        ("signature stripped", {
            let parts: Vec<&str> = access.split('.').collect();
            format!("{}.{}.", parts[0], parts[1])
        }),
        (
            "expired a minute ago",
            mint(&simplejwt_claims(id.clone(), "access", -60)),
        ),
        (
            "expired an hour ago",
            mint(&simplejwt_claims(id.clone(), "access", -3600)),
        ),
        ("refresh as access", refresh.clone()),
        (
            "SimpleJWT refresh as access",
            mint(&simplejwt_claims(id.clone(), "refresh", 300)),
        ),
        ("no token_type", mint(&no_type)),
        ("unknown token_type", mint(&odd_type)),
        ("no exp", mint(&no_exp)),
        ("no user_id", mint(&no_user)),
        ("non-numeric user_id", mint(&bad_user)),
        (
            "unknown user",
            mint(&simplejwt_claims(json!("999999"), "access", 300)),
        ),
        (
            "user id zero",
            mint(&simplejwt_claims(json!(0), "access", 300)),
        ),
    ];
    for (what, token) in &tokens {
        for path in ["/api/users/me/", "/api/connections/", "/api/users/1/"] {
            let (status, body) = api.call("GET", path, Some(token), None).await;
            assert_eq!(status, 401, "{what} on {path}: {body}");
            assert_error(status, &body, 401);
        }
    }
    // Missing or unusable Authorization headers.
    let (status, body) = api.call("GET", "/api/users/me/", None, None).await;
    assert_error(status, &body, 401);
    for header in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Basic {access}"),
        format!("Token {access}"),
        access.clone(),
    ] {
        let res = api
            .http
            .get(api.url("/api/users/me/"))
            .header("authorization", header.as_str())
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge:?}");
        let body: Value = res.json().await.expect("json body");
        assert_eq!(status, 401, "{header}: {body}");
        assert_error(status, &body, 401);
    }
    // The real token still works.
    let (status, _) = api.call("GET", "/api/users/me/", Some(&access), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tokens_of_a_deleted_user_are_refused() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (user, access, refresh) = account(&api, "alice").await;
    let (_, other) = api.user("bob").await;
    let id = user["id"].as_i64().expect("id");
    server
        .database
        .run(move |c| {
            use diesel::RunQueryDsl;
            diesel::sql_query(format!("DELETE FROM users WHERE id = {id}"))
                .execute(c)
                .map_err(Into::into)
        })
        .await
        .expect("delete user");
    let (status, body) = api.call("GET", "/api/users/me/", Some(&access), None).await;
    assert_error(status, &body, 401);
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/token/refresh/",
            None,
            Some(json!({"refresh": refresh})),
        )
        .await;
    assert_error(status, &body, 401);
    let (status, body) = login(&api, "alice", "password123").await;
    assert_error_code(status, &body, 401, "invalid_credentials");
    // Others now see it as unknown.
    let (status, body) = api
        .call("GET", &format!("/api/users/{id}/"), Some(&other), None)
        .await;
    assert_error(status, &body, 404);
}

#[tokio::test]
async fn me_shows_and_patches_the_caller() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (user, access, _) = account(&api, "jdoe").await;
    let (status, me) = api.call("GET", "/api/users/me/", Some(&access), None).await;
    assert_eq!((status, &me), (200, &me_view(&user)));
    assert_eq!(me["name"], "jdoe");
    let (status, body) = api.call("GET", "/api/users/me/", None, None).await;
    assert_error(status, &body, 401);

    let patch = |body: Value| {
        let api = api.clone();
        let access = access.clone();
        async move {
            api.call("PATCH", "/api/users/me/", Some(&access), Some(body))
                .await
        }
    };
    let (status, me) = patch(json!({"first_name": "John"})).await;
    assert_eq!(status, 200, "{me}");
    assert_user_object(&user_object(&me));
    assert_eq!(
        me,
        me_view(
            &json!({"id": user["id"], "username": "jdoe", "first_name": "John",
               "last_name": "", "name": "John", "avatar": null})
        )
    );
    let (status, me) = patch(json!({"last_name": "Doe"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (me["first_name"].as_str(), me["name"].as_str()),
        (Some("John"), Some("John Doe"))
    );
    let (status, me) = patch(json!({"avatar": "https://example.com/a.png"})).await;
    assert_eq!(status, 200);
    assert_eq!(me["avatar"], "https://example.com/a.png");
    assert_eq!(me["name"], "John Doe");
    // An empty patch changes nothing.
    let (status, same) = patch(json!({})).await;
    assert_eq!((status, &same), (200, &me));
    // All three at once.
    let (status, me) =
        patch(json!({"first_name": "Jane", "last_name": "Roe", "avatar": "http://e.org/b.png"}))
            .await;
    assert_eq!(status, 200);
    assert_eq!(
        (me["name"].as_str(), me["avatar"].as_str()),
        (Some("Jane Roe"), Some("http://e.org/b.png"))
    );
    // "" clears the avatar, and so does null.
    let (status, cleared) = patch(json!({"avatar": ""})).await;
    assert_eq!(
        (status, &cleared["avatar"]),
        (200, &Value::Null),
        "{cleared}"
    );
    let (status, _) = patch(json!({"avatar": "http://e.org/b.png"})).await;
    assert_eq!(status, 200);
    let (status, me) = patch(json!({"avatar": null})).await;
    assert_eq!(status, 200);
    assert_eq!(me["avatar"], Value::Null);
    assert_eq!(me["name"], "Jane Roe");
    // Clearing both names falls back to the username.
    let (status, me) = patch(json!({"first_name": "", "last_name": ""})).await;
    assert_eq!(status, 200);
    assert_eq!(me["name"], "jdoe");
    // Persisted, and visible to others.
    let (status, again) = api.call("GET", "/api/users/me/", Some(&access), None).await;
    assert_eq!((status, &again), (200, &me));
    let (_, other) = api.user("other").await;
    let (status, seen) = api
        .call(
            "GET",
            &format!("/api/users/{}/", user["id"]),
            Some(&other),
            None,
        )
        .await;
    // Other users' view never shows the caller's settings.
    assert_eq!((status, &seen), (200, &user_object(&me)));
    assert!(seen.get("share_presence").is_none());
}

#[tokio::test]
async fn invalid_patches_are_400_and_change_nothing() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (_, access, _) = account(&api, "jdoe").await;
    let (status, before) = api
        .call(
            "PATCH",
            "/api/users/me/",
            Some(&access),
            Some(json!({"first_name": "John", "avatar": "https://example.com/a.png"})),
        )
        .await;
    assert_eq!(status, 200);
    let cases = [
        (json!({"avatar": "not a url"}), "avatar"),
        (json!({"avatar": "javascript:alert(1)"}), "avatar"),
        (json!({"avatar": 5}), "avatar"),
        (json!({"first_name": "x".repeat(151)}), "first_name"),
        (json!({"last_name": "x".repeat(151)}), "last_name"),
        (json!({"first_name": 1}), "first_name"),
        (json!({"last_name": ["Doe"]}), "last_name"),
        (json!({"first_name": "Valid", "avatar": "nope"}), "avatar"),
    ];
    for (body, field) in cases {
        let (status, err) = api
            .call("PATCH", "/api/users/me/", Some(&access), Some(body.clone()))
            .await;
        assert_field_error(status, &err, field);
        let (_, now) = api.call("GET", "/api/users/me/", Some(&access), None).await;
        assert_eq!(now, before, "after {body}");
    }
}

#[tokio::test]
async fn username_and_password_cannot_be_patched() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (user, access, _) = account(&api, "jdoe").await;
    let (status, _) = api
        .call(
            "PATCH",
            "/api/users/me/",
            Some(&access),
            Some(json!({"username": "hacker", "password": "new-password-1"})),
        )
        .await;
    assert!(status == 200 || status == 400, "{status}");
    let (status, me) = api.call("GET", "/api/users/me/", Some(&access), None).await;
    assert_eq!((status, &me), (200, &me_view(&user)));
    let (status, body) = login(&api, "jdoe", "password123").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = login(&api, "jdoe", "new-password-1").await;
    assert_error_code(status, &body, 401, "invalid_credentials");
    let (status, body) = login(&api, "hacker", "password123").await;
    assert_error_code(status, &body, 401, "invalid_credentials");
    // The name is free: nobody took it.
    let (status, body) = register(
        &api,
        json!({"username": "hacker", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn any_user_may_look_up_any_user() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let (status, alice) = register(
        &api,
        json!({"username": "alice", "password": "password123", "first_name": "Alice",
               "avatar": "https://example.com/alice.png"}),
    )
    .await;
    assert_eq!(status, 201);
    let (bob, bob_token) = api.user("bob").await;
    // Not connected, still visible.
    let (status, seen) = api
        .call(
            "GET",
            &format!("/api/users/{}/", alice["id"]),
            Some(&bob_token),
            None,
        )
        .await;
    assert_eq!((status, &seen), (200, &alice));
    assert_user_object(&seen);
    let (status, seen) = api
        .call(
            "GET",
            &format!("/api/users/{}/", bob["id"]),
            Some(&bob_token),
            None,
        )
        .await;
    assert_eq!((status, &seen), (200, &bob));
    for missing in ["999999", "0", "-1", "abc", "1.5"] {
        let (status, body) = api
            .call(
                "GET",
                &format!("/api/users/{missing}/"),
                Some(&bob_token),
                None,
            )
            .await;
        assert_error(status, &body, 404);
    }
    let (status, body) = api
        .call("GET", &format!("/api/users/{}/", alice["id"]), None, None)
        .await;
    assert_error(status, &body, 401);
    let (status, body) = api.call("GET", "/api/users/999999/", None, None).await;
    assert_error(status, &body, 401);
    let (status, body) = api
        .call(
            "GET",
            &format!("/api/users/{}/", alice["id"]),
            Some("bogus"),
            None,
        )
        .await;
    assert_error(status, &body, 401);
}
