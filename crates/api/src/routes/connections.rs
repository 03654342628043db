//! Connection requests and their lifecycle.

use super::Router;
use crate::auth::AuthUser;
use crate::dto::{ConnectionView, user_map};
use crate::error::ApiError;
use crate::extract::{integer, json_body, path_id, query_pairs};
use crate::openapi::responses as resp;
use crate::pagination::{ConnectionPage, PageRequest, Paginated};
use crate::service::connections::{self as service, Change};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Connection, ConnectionId, ConnectionStatus, UserId};
use chat_persistence::connections;
use chat_persistence::{DbConnection, QueryResult, users};
use serde_json::Value;
use utoipa::ToSchema;

const CONNECTIONS: &str = "/api/connections/";
const CONNECTION: &str = "/api/connections/{id}/";
const ACCEPT: &str = "/api/connections/{id}/accept/";
const REJECT: &str = "/api/connections/{id}/reject/";

/// `/api/connections/…`.
pub fn configure(r: &mut Router<'_>) {
    r.resource(CONNECTIONS, |e| e.post(create).get(list))
        .resource(CONNECTION, |e| e.get(detail).delete(remove))
        .resource(ACCEPT, |e| e.post(accept))
        .resource(REJECT, |e| e.post(reject));
}

/// `POST /api/connections/`.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct ConnectionRequest {
    /// The user to connect with.
    #[schema(example = 9)]
    user_id: i64,
}

/// Request a connection
///
/// Asks `user_id` to connect. After a rejection or removal, either side may
/// request again.
#[utoipa::path(post, path = CONNECTIONS, tag = "connections", operation_id = "connections_create",
    security(("jwt" = [])), request_body = ConnectionRequest,
    responses(
        (status = 201, description = "The connection, status `pending`.", body = ConnectionView),
        (status = 400, description = "`invalid` (bad `user_id`) or `self_request` (yourself).",
            body = ApiError),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: no such user.", body = ApiError),
        (status = 409, description = "`already_connected`: a pending or accepted connection \
            between the two exists, in either direction.", body = ApiError),
        (status = 413, response = resp::PayloadTooLarge),
        (status = 415, response = resp::UnsupportedMediaType),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, &body, state.settings.limits.max_body_bytes)?;
    let target = match body.get("user_id") {
        None | Some(Value::Null) => {
            return Err(ApiError::field("user_id", "This field is required."));
        }
        Some(v) => {
            integer(v).ok_or_else(|| ApiError::field("user_id", "A valid integer is required."))?
        }
    };
    let me = user.0.id;
    if target <= 0 {
        return Err(ApiError::not_found("User not found."));
    }
    let view = service::request(&state, me, UserId(target)).await?;
    Ok(HttpResponse::Created().json(view))
}

/// The `status` filter of the list: a connection status, or empty for no
/// filter (as django-filter reads an empty value).
struct StatusFilter;

impl utoipa::PartialSchema for StatusFilter {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
        AnyOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name("ConnectionStatus"))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(0)),
            )
            .into()
    }
}

impl ToSchema for StatusFilter {}

/// Your connections
///
/// The connections you are part of, newest first.
#[utoipa::path(get, path = CONNECTIONS, tag = "connections", operation_id = "connections_list",
    security(("jwt" = [])),
    params(
        ("status" = inline(Option<StatusFilter>), Query,
            description = "Only this status (empty: every status)."),
        ("page" = Option<i64>, Query, description = "1-based page number (default 1)."),
        ("page_size" = Option<String>, Query, description = "An integer: default 50, larger values are clamped to 100; anything else falls back to the default (as Django REST framework does)."),
    ),
    responses(
        (status = 200, description = "A page of connections.", body = ConnectionPage),
        (status = 400, description = "`invalid`: unknown `status`.", body = ApiError),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: invalid page, or a page past the end.",
            body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page = PageRequest::from_request(&req)?;
    let status = match query_pairs(&req)
        .into_iter()
        .find(|(k, _)| k == "status")
        .map(|(_, v)| v)
    {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v) => Some(ConnectionStatus::parse(&v).ok_or_else(|| {
            ApiError::field(
                "status",
                format!("Select a valid choice. {v} is not one of the available choices."),
            )
        })?),
    };
    let me = user.0.id;
    let (count, items, users) = state
        .db
        .run(move |c| {
            let (count, items) = connections::list_for(c, me, status, page.offset(), page.size)?;
            let users = load_users(c, &items)?;
            Ok((count, items, users))
        })
        .await?;
    page.check_exists(count)?;
    let users = user_map(users);
    let views: Vec<ConnectionView> = items
        .iter()
        .filter_map(|c| ConnectionView::build(c, &users))
        .collect();
    Ok(HttpResponse::Ok().json(Paginated::new(&req, page, count, views)))
}

/// A connection
#[utoipa::path(get, path = CONNECTION, tag = "connections", operation_id = "connections_get",
    security(("jwt" = [])),
    params(("id" = i64, Path, description = "Connection id.")),
    responses(
        (status = 200, description = "The connection.", body = ConnectionView),
        (status = 401, response = resp::Unauthorized),
        (status = 404, description = "`not_found`: no such connection, or you are not part of it.",
            body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn detail(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = ConnectionId(path_id(&req, "id")?);
    let me = user.0.id;
    let found = state
        .db
        .run(move |c| connections::find_for(c, id, me))
        .await?;
    Ok(HttpResponse::Ok().json(view_of(&state, found).await?))
}

async fn change(
    state: &AppState,
    user: &AuthUser,
    req: &HttpRequest,
    change: Change,
) -> Result<ConnectionView, ApiError> {
    let id = ConnectionId(path_id(req, "id")?);
    service::change(state, user.0.id, id, change).await
}

/// Accept a connection
///
/// Only the addressee may accept; accepting creates the pair's conversation
/// (or brings back their old one).
#[utoipa::path(post, path = ACCEPT, tag = "connections", operation_id = "connections_accept",
    security(("jwt" = [])),
    params(("id" = i64, Path, description = "Connection id.")),
    responses(
        (status = 200, description = "The connection, status `accepted`, `conversation_id` set.",
            body = ConnectionView),
        (status = 401, response = resp::Unauthorized),
        (status = 403, description = "`not_addressee`: only the addressee may accept.",
            body = ApiError),
        (status = 404, response = resp::NotFound),
        (status = 409, description = "`not_pending`: the connection is not pending.",
            body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn accept(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(change(&state, &user, &req, Change::Accept).await?))
}

/// Reject a connection
///
/// Only the addressee may reject.
#[utoipa::path(post, path = REJECT, tag = "connections", operation_id = "connections_reject",
    security(("jwt" = [])),
    params(("id" = i64, Path, description = "Connection id.")),
    responses(
        (status = 200, description = "The connection, status `rejected`.", body = ConnectionView),
        (status = 401, response = resp::Unauthorized),
        (status = 403, description = "`not_addressee`: only the addressee may reject.",
            body = ApiError),
        (status = 404, response = resp::NotFound),
        (status = 409, description = "`not_pending`: the connection is not pending.",
            body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn reject(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(change(&state, &user, &req, Change::Reject).await?))
}

/// Remove a connection
///
/// Either side may remove a pending connection (withdrawing or declining
/// it) or an accepted one; the status becomes `removed`. The conversation
/// and its history stay readable, but nobody can send until the two are
/// connected again.
#[utoipa::path(delete, path = CONNECTION, tag = "connections", operation_id = "connections_delete",
    security(("jwt" = [])),
    params(("id" = i64, Path, description = "Connection id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, response = resp::Unauthorized),
        (status = 404, response = resp::NotFound),
        (status = 409, description = "`already_closed`: already rejected or removed.",
            body = ApiError),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn remove(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    change(&state, &user, &req, Change::Remove).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn load_users(c: &mut DbConnection, items: &[Connection]) -> QueryResult<Vec<chat_domain::User>> {
    let mut ids: Vec<UserId> = items
        .iter()
        .flat_map(|c| [c.requester_id, c.addressee_id])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    users::find_many(c, &ids)
}

async fn view_of(state: &AppState, connection: Connection) -> Result<ConnectionView, ApiError> {
    let (connection, users) = state
        .db
        .run(move |c| {
            let users = load_users(c, std::slice::from_ref(&connection))?;
            Ok((connection, users))
        })
        .await?;
    ConnectionView::build(&connection, &user_map(users))
        .ok_or_else(|| ApiError::not_found("User not found."))
}
