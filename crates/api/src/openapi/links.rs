//! OpenAPI links: how an id one operation answers is used by the next
//! (a connection's id to accept it, the accepted connection's conversation to
//! read and send in it, a sent message's id to read, react to and
//! acknowledge it). Clients can follow them, and the property-based tester
//! (`scripts/api-fuzz.sh`) chains its stateful scenarios along them.
//!
//! Kept here as one table rather than on each handler's annotation: they
//! tie operations of several route modules together.

use serde_json::{Value, json};
use utoipa::Modify;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::{OpenApi as Document, RefOr};

/// One link: from a response of `from` (operation id and status) to the
/// operation `to`, with its parameters and, optionally, request-body
/// fields (merged into whatever else the body holds).
pub(crate) struct Link {
    pub from: &'static str,
    pub status: &'static str,
    pub name: &'static str,
    pub to: &'static str,
    pub parameters: &'static [(&'static str, &'static str)],
    pub body: Option<fn() -> Value>,
}

const fn link(
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
) -> Link {
    Link {
        from,
        status,
        name,
        to,
        parameters,
        body: None,
    }
}

const fn with_body(
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    body: fn() -> Value,
) -> Link {
    Link {
        from,
        status,
        name,
        to,
        parameters,
        body: Some(body),
    }
}

const ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
const FIRST: &[(&str, &str)] = &[("id", "$response.body#/results/0/id")];
const CONVERSATION: &[(&str, &str)] = &[("id", "$response.body#/conversation_id")];

/// Every link of the document.
pub(crate) const LINKS: &[Link] = &[
    // A user: look them up, ask them to connect.
    link("register", "201", "GetUser", "users_get", ID),
    with_body(
        "register",
        "201",
        "RequestConnection",
        "connections_create",
        &[],
        || json!({"user_id": "$response.body#/id"}),
    ),
    link("users_me", "200", "GetUser", "users_get", ID),
    link("users_me_update", "200", "GetUser", "users_get", ID),
    // A connection: read, accept, reject or remove it.
    link(
        "connections_create",
        "201",
        "GetConnection",
        "connections_get",
        ID,
    ),
    link(
        "connections_create",
        "201",
        "AcceptConnection",
        "connections_accept",
        ID,
    ),
    link(
        "connections_create",
        "201",
        "RejectConnection",
        "connections_reject",
        ID,
    ),
    link(
        "connections_create",
        "201",
        "RemoveConnection",
        "connections_delete",
        ID,
    ),
    link(
        "connections_list",
        "200",
        "GetConnection",
        "connections_get",
        FIRST,
    ),
    link(
        "connections_list",
        "200",
        "AcceptConnection",
        "connections_accept",
        FIRST,
    ),
    link(
        "connections_list",
        "200",
        "RejectConnection",
        "connections_reject",
        FIRST,
    ),
    link(
        "connections_list",
        "200",
        "RemoveConnection",
        "connections_delete",
        FIRST,
    ),
    link(
        "connections_list",
        "200",
        "GetRequester",
        "users_get",
        &[("id", "$response.body#/results/0/requester/id")],
    ),
    link(
        "connections_get",
        "200",
        "AcceptConnection",
        "connections_accept",
        ID,
    ),
    link(
        "connections_get",
        "200",
        "RejectConnection",
        "connections_reject",
        ID,
    ),
    link(
        "connections_get",
        "200",
        "RemoveConnection",
        "connections_delete",
        ID,
    ),
    // Accepting opens the pair's conversation.
    link(
        "connections_accept",
        "200",
        "GetConnection",
        "connections_get",
        ID,
    ),
    link(
        "connections_accept",
        "200",
        "RemoveConnection",
        "connections_delete",
        ID,
    ),
    link(
        "connections_accept",
        "200",
        "GetConversation",
        "conversations_get",
        CONVERSATION,
    ),
    link(
        "connections_accept",
        "200",
        "History",
        "conversations_messages",
        CONVERSATION,
    ),
    link(
        "connections_accept",
        "200",
        "MarkRead",
        "conversations_mark_read",
        CONVERSATION,
    ),
    with_body(
        "connections_accept",
        "200",
        "SendMessage",
        "messages_create",
        &[],
        || json!({"conversation_id": "$response.body#/conversation_id"}),
    ),
    // A conversation: its history, read and delivery state, sending in it.
    link(
        "conversations_list",
        "200",
        "GetConversation",
        "conversations_get",
        FIRST,
    ),
    link(
        "conversations_list",
        "200",
        "History",
        "conversations_messages",
        FIRST,
    ),
    link(
        "conversations_list",
        "200",
        "MarkRead",
        "conversations_mark_read",
        FIRST,
    ),
    with_body(
        "conversations_list",
        "200",
        "SendMessage",
        "messages_create",
        &[],
        || json!({"conversation_id": "$response.body#/results/0/id"}),
    ),
    link(
        "conversations_get",
        "200",
        "History",
        "conversations_messages",
        ID,
    ),
    link(
        "conversations_get",
        "200",
        "MarkRead",
        "conversations_mark_read",
        ID,
    ),
    link(
        "conversations_get",
        "200",
        "GetConnection",
        "connections_get",
        &[("id", "$response.body#/connection_id")],
    ),
    link(
        "conversations_get",
        "200",
        "GetOtherUser",
        "users_get",
        &[("id", "$response.body#/other_user/id")],
    ),
    link(
        "conversations_get",
        "200",
        "OtherUserPresence",
        "presence_list",
        &[("user_ids", "$response.body#/other_user/id")],
    ),
    with_body(
        "conversations_get",
        "200",
        "SendMessage",
        "messages_create",
        &[],
        || json!({"conversation_id": "$response.body#/id"}),
    ),
    link(
        "conversations_messages",
        "200",
        "GetMessage",
        "messages_get",
        FIRST,
    ),
    link(
        "conversations_messages",
        "200",
        "React",
        "messages_react",
        FIRST,
    ),
    with_body(
        "conversations_messages",
        "200",
        "Delivered",
        "conversations_delivered",
        &[("id", "$request.path.id")],
        || json!({"message_id": "$response.body#/results/0/id"}),
    ),
    with_body(
        "conversations_messages",
        "200",
        "MarkRead",
        "conversations_mark_read",
        &[("id", "$request.path.id")],
        || json!({"message_ids": ["$response.body#/results/0/id"]}),
    ),
    // A message: read it, react, acknowledge and mark it read.
    link("messages_create", "201", "GetMessage", "messages_get", ID),
    link("messages_create", "201", "React", "messages_react", ID),
    link("messages_create", "201", "Unreact", "messages_unreact", ID),
    link(
        "messages_create",
        "201",
        "GetConversation",
        "conversations_get",
        CONVERSATION,
    ),
    with_body(
        "messages_create",
        "201",
        "Delivered",
        "conversations_delivered",
        CONVERSATION,
        || json!({"message_id": "$response.body#/id"}),
    ),
    with_body(
        "messages_create",
        "201",
        "MarkRead",
        "conversations_mark_read",
        CONVERSATION,
        || json!({"message_ids": ["$response.body#/id"]}),
    ),
    link("messages_create", "200", "GetMessage", "messages_get", ID),
    link("messages_get", "200", "React", "messages_react", ID),
    link("messages_get", "200", "Unreact", "messages_unreact", ID),
    link(
        "messages_get",
        "200",
        "History",
        "conversations_messages",
        CONVERSATION,
    ),
    with_body(
        "messages_get",
        "200",
        "Delivered",
        "conversations_delivered",
        CONVERSATION,
        || json!({"message_id": "$response.body#/id"}),
    ),
    link("messages_react", "200", "GetMessage", "messages_get", ID),
    link(
        "messages_react",
        "200",
        "Unreact",
        "messages_unreact",
        &[
            ("id", "$response.body#/id"),
            ("emoji", "$response.body#/reactions/0/emoji"),
        ],
    ),
    link(
        "conversations_delivered",
        "200",
        "GetMessage",
        "messages_get",
        &[("id", "$response.body#/up_to_message_id")],
    ),
];

/// Adds [`LINKS`] to the responses they start from.
#[derive(Debug)]
pub(crate) struct Links;

impl Modify for Links {
    fn modify(&self, doc: &mut Document) {
        for l in LINKS {
            let operation = doc.paths.paths.values_mut().find_map(|item| {
                [
                    &mut item.get,
                    &mut item.put,
                    &mut item.post,
                    &mut item.delete,
                    &mut item.patch,
                ]
                .into_iter()
                .flatten()
                .find(|op| op.operation_id.as_deref() == Some(l.from))
            });
            // A link whose operation or response is missing is left out;
            // the unit test below names it.
            let Some(RefOr::T(response)) =
                operation.and_then(|op| op.responses.responses.get_mut(l.status))
            else {
                continue;
            };
            let mut built = LinkBuilder::new().operation_id(l.to);
            for (name, expression) in l.parameters {
                built = built.parameter(*name, *expression);
            }
            if let Some(body) = l.body {
                built = built.request_body(Some(body()));
            }
            response
                .links
                .insert(l.name.to_owned(), built.build().into());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every link starts from a documented response and reaches a real
    //! operation, with parameters that operation has and ids that its
    //! source response really carries.

    use super::LINKS;
    use serde_json::Value;

    fn operation<'a>(doc: &'a Value, id: &str) -> Option<&'a Value> {
        doc["paths"].as_object()?.values().find_map(|item| {
            item.as_object()?
                .values()
                .find(|op| op["operationId"] == id)
        })
    }

    /// Follows `$ref`s inside the document.
    fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            v = doc.pointer(&r[1..]).expect("resolvable $ref");
        }
        v
    }

    /// The schema a JSON pointer reaches inside `schema` (through objects,
    /// arrays, `$ref`s and, for `oneOf`, every alternative).
    fn reach<'a>(doc: &'a Value, schema: &'a Value, pointer: &str) -> Option<&'a Value> {
        let schema = resolve(doc, schema);
        if let Some(alternatives) = schema["oneOf"].as_array() {
            let reached: Vec<_> = alternatives
                .iter()
                .map(|a| reach(doc, a, pointer))
                .collect::<Option<_>>()?;
            return reached.first().copied();
        }
        let Some((part, rest)) = pointer
            .strip_prefix('/')
            .map(|p| p.split_once('/').unwrap_or((p, "")))
        else {
            return Some(schema);
        };
        let rest = if rest.is_empty() {
            String::new()
        } else {
            format!("/{rest}")
        };
        let child = if part.chars().all(|c| c.is_ascii_digit()) {
            &schema["items"]
        } else {
            schema["properties"].get(part)?
        };
        reach(doc, child, &rest)
    }

    fn expressions(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| expressions(i, out)),
            Value::Object(map) => map.values().for_each(|i| expressions(i, out)),
            _ => {}
        }
    }

    #[test]
    fn every_link_is_in_the_document_and_reaches_what_it_names() {
        let doc: Value = serde_json::from_str(crate::openapi::json()).expect("document");
        for l in LINKS {
            let label = format!("{} {} {} -> {}", l.from, l.status, l.name, l.to);
            let source = operation(&doc, l.from).unwrap_or_else(|| panic!("{label}: no source"));
            let response = resolve(&doc, &source["responses"][l.status]);
            assert_eq!(
                response["links"][l.name]["operationId"], l.to,
                "{label}: not in the document"
            );
            let target = operation(&doc, l.to).unwrap_or_else(|| panic!("{label}: no target"));
            let names: Vec<&str> = target["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| resolve(&doc, p)["name"].as_str())
                .collect();
            for (name, _) in l.parameters {
                assert!(names.contains(name), "{label}: {} has no `{name}`", l.to);
            }
            let body_schema = &response["content"]["application/json"]["schema"];
            let mut found = l.parameters.iter().map(|(_, e)| (*e).to_owned()).collect();
            if let Some(body) = l.body {
                let body = body();
                let target_body = &target["requestBody"]["content"]["application/json"]["schema"];
                assert!(target_body.is_object(), "{label}: {} takes no body", l.to);
                expressions(&body, &mut found);
            }
            for expression in found {
                if expression.starts_with("$request.path.") {
                    continue; // checked by schemathesis when it loads the links
                }
                let pointer = expression
                    .strip_prefix("$response.body#")
                    .unwrap_or_else(|| panic!("{label}: {expression}"));
                let reached = reach(&doc, body_schema, pointer)
                    .unwrap_or_else(|| panic!("{label}: {pointer} is not in the response"));
                let ty = &reached["type"];
                assert!(
                    *ty == "integer" || *ty == "string" || ty[0] == "integer",
                    "{label}: {pointer} is {reached}"
                );
            }
        }
    }
}
