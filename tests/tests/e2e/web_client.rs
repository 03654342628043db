//! The web client as the server serves it, checked from outside: `/` is
//! its page with a strict CSP, every file it loads is served with its type,
//! revalidates with its ETag (304), is gzipped on request, and names no
//! other origin; the API's own routes are untouched.

use crate::support::*;
use std::collections::BTreeSet;
use std::io::Read;

async fn get(api: &Api, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = api.http.get(api.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("request")
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// What a page or module loads: `src`/`href` attributes and `import ... from '...'`.
fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in ["src=\"", "href=\"", "from '", "import '"] {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let end = rest.find(['"', '\'']).unwrap_or(rest.len());
            out.push(rest[..end].to_owned());
        }
    }
    out
}

/// `/app/app.js` for `./app.js` or `/app/app.js`; None for fragments and data: URLs.
fn asset_path(reference: &str) -> Option<String> {
    if reference.starts_with('#') || reference.starts_with("data:") {
        return None;
    }
    Some(match reference.strip_prefix("./") {
        Some(name) => format!("/app/{name}"),
        None => reference.to_owned(),
    })
}

#[tokio::test]
async fn the_page_is_served_at_root_and_app_with_a_strict_policy() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut bodies = Vec::new();
    for path in ["/", "/app/", "/app"] {
        let res = get(&api, path, &[]).await;
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            header(&res, "content-type").starts_with("text/html"),
            "{path}"
        );
        assert_eq!(header(&res, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        let csp = header(&res, "content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {directive} in {csp}");
        }
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(!csp.contains("http"), "no other origin allowed: {csp}");
        bodies.push(res.text().await.expect("body"));
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    // The socket origins are the Host asked, never a forwarded one.
    let forwarded = get(&api, "/", &[("X-Forwarded-Host", "evil.example")]).await;
    let csp = header(&forwarded, "content-security-policy");
    assert!(!csp.contains("evil"), "{csp}");
    assert!(csp.contains(&format!("ws://{}", server.addr)), "{csp}");
    let page = &bodies[0];
    assert!(page.contains("<script type=\"module\" src=\"/app/app.js\">"));
    // Nothing inline for the policy to refuse.
    assert!(!page.contains("<style"), "inline style element");
    assert!(!page.contains(" style="), "inline style attribute");
    assert!(!page.contains("<script>"), "inline script");
    assert!(!has_event_attribute(page), "inline event handler");
}

/// Whether `html` has an `on...=` attribute.
fn has_event_attribute(html: &str) -> bool {
    html.match_indices(" on").any(|(at, _)| {
        let rest = &html[at + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    })
}

#[tokio::test]
async fn every_asset_has_its_type_and_names_no_other_origin() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    let mut queue = vec!["/".to_owned()];
    let mut seen = BTreeSet::new();
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let res = get(&api, &path, &[]).await;
        assert_eq!(res.status(), 200, "{path} is referenced but not served");
        let content_type = header(&res, "content-type");
        let expected = match path.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            _ => "text/html",
        };
        assert!(
            content_type.starts_with(expected),
            "{path}: {content_type}, expected {expected}"
        );
        assert!(!header(&res, "etag").is_empty(), "{path} has no ETag");
        let text = res.text().await.expect("body");
        for scheme in ["http://", "https://", "//cdn", "url(http", "@import"] {
            assert!(
                !text.contains(scheme),
                "{path} names another origin ({scheme})"
            );
        }
        queue.extend(references(&text).iter().filter_map(|r| asset_path(r)));
    }
    // The page, its style sheet and every module it imports, transitively.
    for expected in [
        "/",
        "/app/app.css",
        "/app/app.js",
        "/app/api.js",
        "/app/stream.js",
    ] {
        assert!(seen.contains(expected), "{expected} not reached: {seen:?}");
    }
    assert!(seen.len() >= 8, "{seen:?}");

    let (status, body) = api.call("GET", "/app/nope.js", None, None).await;
    assert_error_code(status, &body, 404, "not_found");
    let (status, body) = api
        .call("GET", "/app/%2e%2e%2fCargo.toml", None, None)
        .await;
    assert_error_code(status, &body, 404, "not_found");
}

#[tokio::test]
async fn assets_revalidate_with_their_etag() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for path in ["/", "/app/app.js", "/app/app.css"] {
        let first = get(&api, path, &[]).await;
        assert_eq!(first.status(), 200);
        let etag = header(&first, "etag");
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "a strong ETag: {etag}"
        );
        let again = get(&api, path, &[("If-None-Match", &etag)]).await;
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(header(&again, "etag"), etag);
        assert_eq!(header(&again, "cache-control"), "no-cache");
        assert!(again.bytes().await.expect("body").is_empty());
        let weak = format!("W/{etag}");
        let list = format!("\"other\", {weak}");
        let again = get(&api, path, &[("If-None-Match", &list)]).await;
        assert_eq!(again.status(), 304, "weak comparison, in a list");
        let stale = get(&api, path, &[("If-None-Match", "\"0000000000000000\"")]).await;
        assert_eq!(stale.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn assets_are_gzipped_when_the_client_accepts_it() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for path in ["/", "/app/app.js", "/app/app.css", "/app/chat.js"] {
        let plain = get(&api, path, &[]).await;
        assert_eq!(header(&plain, "content-encoding"), "", "{path}");
        assert!(header(&plain, "vary").contains("Accept-Encoding"));
        let plain_etag = header(&plain, "etag");
        let plain = plain.bytes().await.expect("body");

        let gz = get(&api, path, &[("Accept-Encoding", "br;q=1.0, gzip;q=0.8")]).await;
        assert_eq!(gz.status(), 200);
        assert_eq!(header(&gz, "content-encoding"), "gzip", "{path}");
        assert!(header(&gz, "vary").contains("Accept-Encoding"));
        let gz_etag = header(&gz, "etag");
        assert_ne!(gz_etag, plain_etag, "each representation has its own ETag");
        let packed = gz.bytes().await.expect("body");
        assert!(packed.len() < plain.len(), "{path}: smaller");
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .expect("valid gzip");
        assert_eq!(unpacked, plain.to_vec(), "{path}: the same bytes");
        let cached = get(
            &api,
            path,
            &[("Accept-Encoding", "gzip"), ("If-None-Match", &gz_etag)],
        )
        .await;
        assert_eq!(cached.status(), 304);

        let refused = get(&api, path, &[("Accept-Encoding", "gzip;q=0, identity")]).await;
        assert_eq!(header(&refused, "content-encoding"), "", "q=0 refuses gzip");
    }
}

#[tokio::test]
async fn the_client_leaves_the_api_routes_alone() {
    let server = TestServer::start().await;
    let api = Api::new(&server);
    for path in [
        "/healthz/",
        "/readyz/",
        "/metrics/",
        "/api/schema/",
        "/api/docs/",
    ] {
        let res = get(&api, path, &[]).await;
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            !header(&res, "content-type").starts_with("text/html") || path == "/api/docs/",
            "{path} serves the client"
        );
    }
    let (status, body) = api.call("GET", "/api/nope/", None, None).await;
    assert_error_code(status, &body, 404, "not_found");
    let (status, body) = api.call("POST", "/", None, None).await;
    assert_error_code(status, &body, 405, "method_not_allowed");
    let (_, token) = api.user("webclient").await;
    let (status, me) = api.call("GET", "/api/users/me/", Some(&token), None).await;
    assert_eq!(status, 200, "{me}");
}
