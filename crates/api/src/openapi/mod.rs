//! The OpenAPI 3 document of the API, generated with utoipa from the
//! `#[utoipa::path]` annotations on the handlers, the wire types of
//! [`crate::dto`] and the schemas of [`schemas`]. Served at `/api/schema/`
//! and browsable at `/api/docs/` (see `routes::docs`).
//!
//! `info.description` ([`description.md`](./description.md)) documents the
//! conventions and the WebSocket API.

pub mod responses;
pub mod schemas;

use crate::routes;
use std::sync::OnceLock;
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
        routes::messages::send,
        routes::messages::detail,
        routes::ws::upgrade,
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
        routes::docs::schema,
        routes::docs::index,
        routes::docs::asset,
    ),
    components(
        schemas(schemas::ClientEvent, schemas::ServerEvent),
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
    modifiers(&BearerScheme, &CommonResponses),
    tags(
        (name = "auth", description = "Registration and JWTs."),
        (name = "users", description = "The caller's profile and user look-ups."),
        (name = "connections", description = "Connection requests between users and their lifecycle."),
        (name = "conversations", description = "Conversations, their history and read state."),
        (name = "messages", description = "Sending over HTTP and reading single messages."),
        (name = "websocket", description = "Live events of one conversation; the frames, close codes and idempotent sends are described at the top of this document."),
        (name = "health", description = "Liveness, readiness and metrics."),
        (name = "docs", description = "This document and its browsable view."),
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
    //! The hand-written schemas against the real wire types.

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
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        assert_eq!(required, keys(&wire), "every field is always present");
    }

    #[test]
    fn connection_status_values_match() {
        let doc = doc();
        let listed: BTreeSet<String> = doc["components"]["schemas"]["ConnectionStatus"]["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .map(Value::to_string)
            .collect();
        let real: BTreeSet<String> = [
            ConnectionStatus::Pending,
            ConnectionStatus::Accepted,
            ConnectionStatus::Rejected,
            ConnectionStatus::Removed,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).expect("json"))
        .collect();
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
                stream: None,
            },
            chat_domain::ServerEvent::TypingIndicator {
                conversation_id: None,
                user_id: UserId(2),
                user_name: "n".into(),
                is_typing: true,
            },
            chat_domain::ServerEvent::MessagesRead {
                conversation_id: None,
                user_id: UserId(2),
                message_ids: vec![MessageId(1)],
                read_at: t,
                stream: None,
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
}
