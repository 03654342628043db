//! The OpenAPI document at `/api/schema/` and Swagger UI at `/api/docs/`.
//!
//! The routes the server mounts come from `chat_api::route_table()`, which
//! runs the same registration code as the server; the server itself is
//! asked for the methods of each route (the `Allow` header of a 405), so
//! the table, the running server and the document must all agree.

use crate::support::*;
use crate::ws_support;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn fetch_document(api: &Api) -> Value {
    let res = api
        .http
        .get(api.url("/api/schema/"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    res.json().await.expect("JSON document")
}

/// `/api/users/{id}/` and `/api/users/{user_id}/` are the same route.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every `$ref` in `v`, with where it was found.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "$ref" {
                    out.push((
                        at.to_owned(),
                        child.as_str().unwrap_or("<not a string>").into(),
                    ));
                } else {
                    refs(child, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                refs(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Follows `$ref`s (inside the document) until a non-reference.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => v = doc.pointer(&r[1..]).expect("resolvable $ref"),
            None => return v,
        }
    }
    panic!("$ref loop")
}

/// (METHOD, normalized path) -> operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths object") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.insert((method.to_uppercase(), normalize(path)), op.clone());
            }
        }
    }
    out
}

#[tokio::test]
async fn document_is_valid_openapi_3_and_covers_every_mounted_route() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let doc = fetch_document(&api).await;

    // The basics of an OpenAPI 3 document.
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string(), "info.title");
    assert!(doc["info"]["version"].is_string(), "info.version");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(!paths.is_empty());

    // Every $ref points inside the document and resolves.
    let mut found = Vec::new();
    refs(&doc, "#", &mut found);
    assert!(!found.is_empty());
    for (at, r) in &found {
        assert!(r.starts_with("#/"), "{at}: external or malformed $ref {r}");
        assert!(
            doc.pointer(&r[1..]).is_some(),
            "{at}: $ref {r} does not resolve"
        );
    }

    // Every operation has responses, a unique operationId, its path
    // parameters, and security schemes that exist.
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert!(
        schemes
            .values()
            .any(|s| s["type"] == "http" && s["scheme"] == "bearer"),
        "a bearer scheme: {schemes:?}"
    );
    let mut ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(
            path.ends_with('/'),
            "{path} is written without its trailing slash"
        );
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path} has no responses");
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| resolve(&doc, p))
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
            for requirement in op["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().expect("requirement").keys() {
                    assert!(schemes.contains_key(name), "{method} {path}: scheme {name}");
                }
            }
            // Errors have the API's error body.
            for (status, response) in responses {
                let response = resolve(&doc, response);
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"];
                    if path == "/readyz/" && status == "503" {
                        continue; // readiness reports its checks instead
                    }
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    let error = &doc["components"]["schemas"]["Error"];
    let error_fields: BTreeSet<&str> = error["properties"]
        .as_object()
        .expect("error properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(error_fields, BTreeSet::from(["detail", "code", "fields"]));
    assert_eq!(error["required"], json!(["detail", "code"]));

    // The document and the mounted routes agree, both ways.
    let documented = operations(&doc);
    let table = chat_api::route_table();
    let mounted: BTreeSet<(String, String)> = table
        .iter()
        .map(|(m, p)| ((*m).to_owned(), normalize(p)))
        .collect();
    assert_eq!(
        mounted.len(),
        table.len(),
        "a route is mounted twice: {table:?}"
    );
    let documented_keys: BTreeSet<(String, String)> = documented.keys().cloned().collect();
    let undocumented: Vec<_> = mounted.difference(&documented_keys).collect();
    assert!(
        undocumented.is_empty(),
        "mounted but not documented: {undocumented:?}"
    );
    let unmounted: Vec<_> = documented_keys.difference(&mounted).collect();
    assert!(
        unmounted.is_empty(),
        "documented but not mounted: {unmounted:?}"
    );

    // The route table is what the server really serves: each path answers
    // another method with 405 and the table's methods in `Allow`.
    let mut by_path: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (method, path) in &table {
        by_path.entry(path).or_default().insert(method);
    }
    for (path, methods) in by_path {
        let concrete = normalize(path).replace("{}", "1");
        let res = api
            .http
            .request(reqwest::Method::TRACE, api.url(&concrete))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 405, "TRACE {concrete}");
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let allowed: BTreeSet<&str> = allow.split(',').map(str::trim).collect();
        assert_eq!(allowed, methods, "methods served on {path}");
        let body: Value = res.json().await.expect("JSON error");
        assert_eq!(body["code"], "method_not_allowed");
    }

    // The contract's error statuses are all documented somewhere.
    let statuses: BTreeSet<String> = documented
        .values()
        .flat_map(|op| op["responses"].as_object().into_iter().flatten())
        .map(|(status, _)| status.clone())
        .collect();
    for status in [
        "400", "401", "403", "404", "405", "409", "413", "415", "429", "503",
    ] {
        assert!(statuses.contains(status), "no operation documents {status}");
    }
}

#[tokio::test]
async fn document_describes_the_websocket_api() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let doc = fetch_document(&api).await;

    let ws = &doc["paths"]["/ws/chat/{conversation_id}/"]["get"];
    assert!(
        ws.is_object(),
        "the WebSocket upgrade is documented as a GET"
    );
    assert!(
        ws["responses"]["101"].is_object(),
        "101 Switching Protocols"
    );
    let params: Vec<&str> = ws["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"token"), "{params:?}");

    let text = doc["info"]["description"]
        .as_str()
        .expect("info.description");
    for needle in [
        "/ws/chat/{conversation_id}/",
        "?token=",
        "Authorization: Bearer",
        "4001",
        "4003",
        "4004",
        "1008",
        "1009",
        "1011",
        "1013",
        "client_id",
        "connection_established",
        "chat_message",
        "typing_indicator",
        "message_read",
        "messages_read",
        "`error`",
    ] {
        assert!(text.contains(needle), "info.description lacks {needle}");
    }

    // The event schemas: 3 client events, 5 server events, by `type`.
    let types = |name: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][name]["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is a oneOf"))
            .iter()
            .map(|v| resolve(&doc, v)["properties"]["type"]["enum"][0].to_string())
            .collect()
    };
    assert_eq!(
        types("ClientEvent"),
        [
            "\"chat_message\"",
            "\"typing_indicator\"",
            "\"message_read\"",
            "\"ack\""
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        types("ServerEvent"),
        [
            "\"connection_established\"",
            "\"chat_message\"",
            "\"typing_indicator\"",
            "\"connection_request\"",
            "\"connection_updated\"",
            "\"conversation_created\"",
            "\"conversation_updated\"",
            "\"messages_read\"",
            "\"messages_delivered\"",
            "\"presence\"",
            "\"reaction_changed\"",
            "\"error\"",
        ]
        .map(String::from)
        .into()
    );
}

/// The property names of a documented object schema (those of every part
/// of an `allOf`, as a flattened field documents them).
fn properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(doc, schema);
    if let Some(parts) = schema["allOf"].as_array() {
        return parts.iter().flat_map(|p| properties(doc, p)).collect();
    }
    schema["properties"]
        .as_object()
        .expect("object schema")
        .keys()
        .cloned()
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

/// The `application/json` schema of `status` for `METHOD path`.
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let response = &doc["paths"][path][method]["responses"][status];
    &resolve(doc, response)["content"]["application/json"]["schema"]
}

#[tokio::test]
async fn documented_objects_match_real_responses() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let doc = fetch_document(&api).await;
    let (ta, _, conv, _, _) = api.pair("doc_alice", "doc_bob").await;

    let (_, me) = api.call("GET", "/api/users/me/", Some(&ta), None).await;
    let schema = response_schema(&doc, "get", "/api/users/me/", "200");
    assert_eq!(properties(&doc, schema), keys(&me), "user");

    let (_, page) = api.call("GET", "/api/connections/", Some(&ta), None).await;
    let schema = response_schema(&doc, "get", "/api/connections/", "200");
    assert_eq!(properties(&doc, schema), keys(&page), "connection page");
    let item = &resolve(&doc, schema)["properties"]["results"]["items"];
    assert_eq!(
        properties(&doc, item),
        keys(&page["results"][0]),
        "connection"
    );

    let (status, message) = api
        .call(
            "POST",
            "/api/chat/messages/",
            Some(&ta),
            Some(json!({"conversation_id": conv, "content": "hi", "client_id": "k1"})),
        )
        .await;
    assert_eq!(status, 201, "{message}");
    let schema = response_schema(&doc, "post", "/api/chat/messages/", "201");
    assert_eq!(properties(&doc, schema), keys(&message), "message");

    let (_, page) = api
        .call("GET", "/api/chat/conversations/", Some(&ta), None)
        .await;
    let schema = response_schema(&doc, "get", "/api/chat/conversations/", "200");
    let item = &resolve(&doc, schema)["properties"]["results"]["items"];
    assert_eq!(
        properties(&doc, item),
        keys(&page["results"][0]),
        "conversation"
    );

    let path = format!("/api/chat/conversations/{conv}/messages/?limit=5");
    let (_, cursor) = api.call("GET", &path, Some(&ta), None).await;
    let history = response_schema(&doc, "get", "/api/chat/conversations/{id}/messages/", "200");
    let shapes: Vec<BTreeSet<String>> = resolve(&doc, history)["oneOf"]
        .as_array()
        .expect("page or cursor")
        .iter()
        .map(|s| properties(&doc, s))
        .collect();
    assert!(shapes.contains(&keys(&cursor)), "cursor read: {cursor}");

    let (_, found) = api
        .call("GET", "/api/chat/search/?q=hi", Some(&ta), None)
        .await;
    let schema = response_schema(&doc, "get", "/api/chat/search/", "200");
    assert_eq!(properties(&doc, schema), keys(&found), "search page");
    let item = &resolve(&doc, schema)["properties"]["results"]["items"];
    assert_eq!(
        properties(&doc, item),
        keys(&found["results"][0]),
        "search result"
    );

    // A WebSocket `chat_message` event has the documented fields.
    let mut ws = ws_support::join(&server.ws_url(""), conv, &ta).await;
    ws_support::send(
        &mut ws,
        json!({"type": "chat_message", "content": "over ws", "client_id": "k2"}),
    )
    .await;
    let event = ws_support::next_of(&mut ws, "chat_message").await;
    let variant = doc["components"]["schemas"]["ServerEvent"]["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .map(|v| resolve(&doc, v))
        .find(|v| v["properties"]["type"]["enum"][0] == "chat_message")
        .expect("chat_message schema");
    assert_eq!(
        properties(&doc, variant),
        keys(&event),
        "chat_message event"
    );
}

#[tokio::test]
async fn swagger_ui_is_served_with_local_assets_only() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for path in ["/api/docs/", "/api/docs"] {
        let res = api.http.get(api.url(path)).send().await.expect("request");
        assert_eq!(res.status(), 200, "{path}");
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        let html = res.text().await.expect("body");
        assert!(html.contains("swagger-ui"), "{html}");

        let mut assets = Vec::new();
        for attr in ["src=\"", "href=\""] {
            for (i, _) in html.match_indices(attr) {
                let rest = &html[i + attr.len()..];
                let end = rest.find('"').expect("closing quote");
                assets.push(rest[..end].to_owned());
            }
        }
        assert!(
            assets.iter().any(|a| a.ends_with(".js")),
            "scripts: {assets:?}"
        );
        for asset in &assets {
            let lower = asset.to_ascii_lowercase();
            assert!(
                !lower.starts_with("http:")
                    && !lower.starts_with("https:")
                    && !lower.starts_with("//"),
                "{asset} is loaded from another host"
            );
            let local = format!("/api/docs/{}", asset.trim_start_matches("./"));
            let res = api.http.get(api.url(&local)).send().await.expect("asset");
            assert_eq!(res.status(), 200, "{local}");
            assert!(
                !res.bytes().await.expect("asset body").is_empty(),
                "{local}"
            );
        }
    }

    // The page loads this service's document and no validator badge.
    let (status, init) = api
        .call("GET", "/api/docs/swagger-initializer.js", None, None)
        .await;
    assert_eq!(status, 200);
    let init = init.as_str().expect("script text").to_owned();
    assert!(init.contains("/api/schema/"), "{init}");
    assert!(!init.contains("https://"), "{init}");
    assert!(!init.contains("http://"), "{init}");

    let (status, body) = api
        .call("GET", "/api/docs/no-such-file.js", None, None)
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}
