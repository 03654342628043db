//! The OpenAPI 3 document of the API, generated with utoipa from the
//! `#[utoipa::path]` annotations on the handlers and from the wire types
//! themselves: those of [`crate::dto`], [`crate::pagination`] and
//! [`crate::error`], the response and request types next to their handlers,
//! and the `chat-domain` types (its `openapi` feature). Served at
//! `/api/schema/` and browsable at `/api/docs/` (see `routes::docs`).
//!
//! `info.description` ([`description.md`](./description.md)) documents the
//! conventions and the WebSocket API.

mod links;
pub mod responses;

use crate::routes;
use links::Links;
use std::sync::OnceLock;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse};

/// Name of the bearer JWT security scheme.
pub const BEARER: &str = "jwt";

/// The document's definition.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Chat service API",
        description = include_str!("description.md"),
    ),
    paths(
        routes::auth::register,
        routes::auth::token,
        routes::auth::refresh,
        routes::auth::blacklist,
        routes::users::me,
        routes::users::update_me,
        routes::users::by_id,
        routes::connections::create,
        routes::connections::list,
        routes::connections::detail,
        routes::connections::remove,
        routes::connections::accept,
        routes::connections::reject,
        routes::conversations::list,
        routes::conversations::detail,
        routes::conversations::history,
        routes::conversations::mark_read,
        routes::conversations::delivered,
        routes::presence::lookup,
        routes::messages::send,
        routes::messages::detail,
        routes::messages::add_reaction,
        routes::messages::remove_reaction,
        routes::attachments::upload,
        routes::attachments::download,
        routes::attachments::thumbnail,
        routes::search::search,
        routes::ws::upgrade,
        routes::ws::upgrade_stream,
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
        routes::docs::schema,
        routes::docs::index,
        routes::docs::asset,
        routes::web_client::root,
        routes::web_client::app,
        routes::web_client::asset,
    ),
    components(
        schemas(chat_domain::ClientEvent, chat_domain::ServerEvent),
        responses(
            responses::BadRequest,
            responses::Unauthorized,
            responses::NotFound,
            responses::MethodNotAllowed,
            responses::PayloadTooLarge,
            responses::UnsupportedMediaType,
            responses::TooManyRequests,
            responses::InternalError,
            responses::ServiceUnavailable,
        ),
    ),
    modifiers(&BearerScheme, &CommonResponses, &ObjectBodies, &Links),
    tags(
        (name = "auth", description = "Registration and JWTs."),
        (name = "users", description = "The caller's profile and user look-ups."),
        (name = "connections", description = "Connection requests between users and their lifecycle."),
        (name = "conversations", description = "Conversations, their history and read state."),
        (name = "messages", description = "Sending over HTTP and reading single messages."),
        (name = "attachments", description = "Uploading files to send with messages, and downloading them."),
        (name = "search", description = "Full-text search of the messages of your conversations."),
        (name = "presence", description = "Whether the users you are connected to are online."),
        (name = "websocket", description = "Live events of one conversation; the frames, close codes and idempotent sends are described at the top of this document."),
        (name = "health", description = "Liveness, readiness and metrics."),
        (name = "docs", description = "This document and its browsable view."),
        (name = "web client", description = "The chat web client served by this service (HTML, scripts, styles; see the README)."),
    ),
)]
pub struct ApiDoc;

/// Adds the bearer JWT security scheme the operations refer to.
#[derive(Debug)]
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `POST /api/auth/token/` (HS256, SimpleJWT claims).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds what every operation can answer: 405 for another method on its
/// path, and 500.
#[derive(Debug)]
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut Document) {
        let common = [
            ("405", responses::MethodNotAllowed::response().0),
            ("500", responses::InternalError::response().0),
        ];
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, name) in &common {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
                }
            }
        }
    }
}

/// Operations whose body may be absent but, when present, is an object:
/// utoipa writes an optional body as `oneOf: [schema, null]`, and these
/// handlers refuse a `null` body (400) as every API body that is not an
/// object. (`mark_read` reads `null` as "mark everything", so it keeps it.)
const OBJECT_BODIES: &[&str] = &["users_me_update"];

/// Drops the `null` alternative of the optional bodies in [`OBJECT_BODIES`].
#[derive(Debug)]
struct ObjectBodies;

impl Modify for ObjectBodies {
    fn modify(&self, doc: &mut Document) {
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                if !OBJECT_BODIES.contains(&operation.operation_id.as_deref().unwrap_or_default()) {
                    continue;
                }
                let contents = operation
                    .request_body
                    .iter_mut()
                    .filter_map(|body| match body {
                        RefOr::T(body) => Some(body),
                        RefOr::Ref(_) => None,
                    })
                    .flat_map(|body| body.content.values_mut());
                for content in contents {
                    let RefOr::T(content) = content else { continue };
                    if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                        let not_null: Vec<_> = one_of
                            .items
                            .iter()
                            .filter(|s| !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == Type::Null.into()))
                            .cloned()
                            .collect();
                        if let [only] = not_null.as_slice() {
                            content.schema = Some(only.clone());
                        }
                    }
                }
            }
        }
    }
}

/// The `avatar` of a request body: an `http(s)` URI (RFC 3986, so no
/// whitespace around it either) of at most 2048 characters, or `null`, `""`
/// or only whitespace (Unicode `White_Space`, what the server trims) for none.
pub(crate) fn avatar_input() -> Schema {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::Custom("uri".into())))
                .pattern(Some("^https?://[^/?#]"))
                .max_length(Some(2048)),
        )
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(
            r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
        )))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "An `http(s)` URL (RFC 3986) of at most 2048 characters; null, empty or blank for none.",
        ))
        .build()
        .into()
}

/// The document, built once.
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        serde_json::to_string(document()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialize the OpenAPI document");
            String::from("{}")
        })
    })
}

#[cfg(test)]
mod tests {
    //! The document against the real wire types and the one list of error codes.

    use super::*;
    use chat_domain::{ConnectionStatus, ConversationId, MessageId, UserId, UserView};
    use serde_json::{Value, json};
    use std::collections::BTreeSet;

    fn doc() -> Value {
        serde_json::from_str(json()).expect("JSON document")
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().expect("object").keys().cloned().collect()
    }

    /// The strings of a JSON array, such as an `enum` or `required` list.
    fn strings(v: &Value) -> BTreeSet<String> {
        v.as_array()
            .expect("array")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    fn required(schema: &Value) -> BTreeSet<String> {
        strings(&schema["required"])
    }

    #[test]
    fn user_schema_matches_user_view() {
        let view = UserView {
            id: UserId(1),
            username: "u".into(),
            first_name: String::new(),
            last_name: String::new(),
            name: "u".into(),
            avatar: None,
        };
        let doc = doc();
        let schema = &doc["components"]["schemas"]["User"];
        let wire = serde_json::to_value(&view).expect("json");
        assert_eq!(keys(&schema["properties"]), keys(&wire));
        assert_eq!(
            required(schema),
            keys(&wire),
            "every field is always present"
        );
    }

    #[test]
    fn connection_status_values_match() {
        let doc = doc();
        let listed = strings(&doc["components"]["schemas"]["ConnectionStatus"]["enum"]);
        let real: BTreeSet<String> = ConnectionStatus::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        let wire: Vec<Value> = ConnectionStatus::ALL
            .iter()
            .map(|s| serde_json::to_value(s).expect("json"))
            .collect();
        assert_eq!(
            strings(&Value::Array(wire)),
            real,
            "as_str is the wire name"
        );
        assert_eq!(listed, real);
    }

    #[test]
    fn server_event_schemas_match_the_events() {
        let t = chrono::Utc::now();
        let events = [
            chat_domain::ServerEvent::established(ConversationId(1), UserId(2)),
            chat_domain::ServerEvent::ChatMessage {
                message_id: MessageId(1),
                conversation_id: ConversationId(1),
                sender_id: UserId(2),
                sender_name: "n".into(),
                sender_avatar: None,
                content: "c".into(),
                created_at: t,
                client_id: None,
                attachments: vec![],
                stream: None,
            },
            chat_domain::ServerEvent::TypingIndicator {
                conversation_id: Some(ConversationId(1)),
                user_id: UserId(2),
                user_name: "n".into(),
                is_typing: true,
            },
            chat_domain::ServerEvent::MessagesRead {
                conversation_id: Some(ConversationId(1)),
                user_id: UserId(2),
                message_ids: vec![MessageId(1)],
                read_at: t,
                stream: None,
            },
            chat_domain::ServerEvent::MessagesDelivered {
                conversation_id: ConversationId(1),
                user_id: UserId(2),
                up_to_message_id: MessageId(3),
                delivered_at: t,
                seq: Some(4),
            },
            chat_domain::ServerEvent::ReactionChanged {
                conversation_id: ConversationId(1),
                message_id: MessageId(2),
                user_id: UserId(3),
                emoji: "e".into(),
                added: true,
                reactions: vec![],
                seq: Some(4),
            },
            chat_domain::ServerEvent::Presence {
                user_id: UserId(2),
                status: "online".into(),
                last_seen: None,
            },
            chat_domain::ServerEvent::ConnectionRequest {
                connection: json!({}),
                seq: 1,
            },
            chat_domain::ServerEvent::ConnectionUpdated {
                connection: json!({}),
                seq: 2,
            },
            chat_domain::ServerEvent::ConversationCreated {
                conversation: json!({}),
                seq: 3,
            },
            chat_domain::ServerEvent::ConversationUpdated {
                conversation: json!({}),
                seq: 4,
            },
            chat_domain::ServerEvent::Error {
                message: "m".into(),
                client_id: Some("k".into()),
            },
        ];
        let doc = doc();
        let variants = doc["components"]["schemas"]["ServerEvent"]["oneOf"]
            .as_array()
            .expect("oneOf")
            .clone();
        assert_eq!(variants.len(), events.len());
        for event in &events {
            let wire = serde_json::to_value(event).expect("json");
            let variant = variants
                .iter()
                .find(|v| v["properties"]["type"]["enum"] == json!([wire["type"]]))
                .unwrap_or_else(|| panic!("no schema for {wire}"));
            assert_eq!(keys(&variant["properties"]), keys(&wire), "{wire}");
        }
    }

    /// The characters of a regular-expression class body such as
    /// `\t\u0000-\u001f `: escapes, ranges and literal characters.
    fn class(body: &str) -> Vec<(char, char)> {
        let mut chars = body.chars().peekable();
        let one = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let c = chars.next()?;
            if c != '\\' {
                return Some(c);
            }
            Some(match chars.next()? {
                't' => '\t',
                'n' => '\n',
                'f' => '\u{c}',
                'r' => '\r',
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                other => panic!("unknown escape \\{other}"),
            })
        };
        let mut out = Vec::new();
        while let Some(low) = one(&mut chars) {
            if chars.peek() == Some(&'-') {
                chars.next();
                let high = one(&mut chars).expect("range end");
                out.push((low, high));
            } else {
                out.push((low, low));
            }
        }
        out
    }

    fn in_class(ranges: &[(char, char)], c: char) -> bool {
        ranges.iter().any(|(low, high)| (*low..=*high).contains(&c))
    }

    /// The class body of a pattern such as `^[^...]{1,32}$`, after `open`.
    fn class_of<'a>(pattern: &'a str, open: &str) -> &'a str {
        let start = pattern.find(open).expect("class") + open.len();
        let end = start + pattern[start..].find(']').expect("class end");
        &pattern[start..end]
    }

    /// The documented patterns are the server's own rules, character by
    /// character: the emoji's (no whitespace or control character), the
    /// blank avatar's and the message content's (Rust's `trim`, Unicode
    /// `White_Space`).
    #[test]
    fn documented_character_classes_are_the_server_rules() {
        let doc = doc();
        let reaction = &doc["paths"]["/api/chat/messages/{id}/reactions/{emoji}/"]["put"];
        let emoji = reaction["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "emoji")
            .expect("emoji parameter");
        let emoji = class(class_of(
            emoji["schema"]["pattern"].as_str().expect("pattern"),
            "[^",
        ));
        let avatar = &doc["components"]["schemas"]["ProfileUpdate"]["properties"]["avatar"];
        let blank = class(class_of(
            avatar["anyOf"][1]["pattern"].as_str().expect("pattern"),
            "^[",
        ));
        let content =
            doc["components"]["schemas"]["SendMessageRequest"]["properties"]["content"]["pattern"]
                .as_str()
                .expect("pattern");
        let not_blank = class(class_of(content, "*[^\\u0000"));
        for c in (0..=0x10_ffff).filter_map(char::from_u32) {
            assert_eq!(
                in_class(&emoji, c),
                chat_domain::reaction::Emoji::parse(&c.to_string()).is_err(),
                "{:?} (U+{:04X}) in the emoji pattern",
                c,
                u32::from(c)
            );
            assert_eq!(
                in_class(&blank, c),
                c.is_whitespace(),
                "U+{:04X}",
                u32::from(c)
            );
            assert_eq!(
                in_class(&not_blank, c),
                c.is_whitespace(),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn error_code_schema_is_the_error_code_enum() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Error"]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
        let listed = strings(&schemas["ErrorCode"]["enum"]);
        let real: BTreeSet<String> = crate::error::ErrorCode::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(listed, real);
    }

    #[test]
    fn page_schemas_match_the_page_body() {
        let req = actix_web::test::TestRequest::default().to_http_request();
        let page = crate::pagination::PageRequest::from_request(&req).expect("page");
        let body = crate::pagination::Paginated::<i64>::new(&req, page, 0, Vec::new());
        let wire = serde_json::to_value(&body).expect("json");
        let doc = doc();
        for name in ["ConnectionPage", "ConversationPage", "MessagePage"] {
            let schema = &doc["components"]["schemas"][name];
            assert_eq!(keys(&schema["properties"]), keys(&wire), "{name}");
            assert_eq!(
                required(schema),
                keys(&wire),
                "{name}: every field is always present"
            );
        }
    }
}
