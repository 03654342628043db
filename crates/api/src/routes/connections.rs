//! Connection requests and their lifecycle.

use crate::auth::AuthUser;
use crate::dto::{ConnectionView, user_map};
use crate::error::ApiError;
use crate::extract::{json_body, path_id};
use crate::pagination::{PageRequest, Paginated, query_pairs};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Connection, ConnectionId, ConnectionStatus, UserId};
use chat_persistence::connections::{self, RuleResult};
use chat_persistence::{DbConnection, QueryResult, users};
use serde_json::Value;

/// `/api/connections/…`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/connections/")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/api/connections/{id}/")
            .route(web::get().to(detail))
            .route(web::delete().to(remove)),
    )
    .service(web::resource("/api/connections/{id}/accept/").route(web::post().to(accept)))
    .service(web::resource("/api/connections/{id}/reject/").route(web::post().to(reject)));
}

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
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::field("user_id", "A valid integer is required."))?,
    };
    let me = user.0.id;
    if target <= 0 {
        return Err(ApiError::not_found("User not found."));
    }
    let result = state
        .db
        .run(move |c| connections::request(c, me, UserId(target)))
        .await;
    let created = match result {
        Err(chat_persistence::PersistenceError::NotFound) => {
            return Err(ApiError::not_found("User not found."));
        }
        other => other?,
    }?;
    let view = view_of(&state, created).await?;
    Ok(HttpResponse::Created().json(view))
}

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

type Transition =
    fn(&mut DbConnection, ConnectionId, UserId) -> QueryResult<RuleResult<Connection>>;

async fn transition(
    state: &AppState,
    user: &AuthUser,
    req: &HttpRequest,
    op: Transition,
) -> Result<Connection, ApiError> {
    let id = ConnectionId(path_id(req, "id")?);
    let me = user.0.id;
    Ok(state.db.run(move |c| op(c, id, me)).await??)
}

async fn accept(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let c = transition(&state, &user, &req, connections::accept).await?;
    Ok(HttpResponse::Ok().json(view_of(&state, c).await?))
}

async fn reject(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let c = transition(&state, &user, &req, connections::reject).await?;
    Ok(HttpResponse::Ok().json(view_of(&state, c).await?))
}

async fn remove(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    transition(&state, &user, &req, connections::remove).await?;
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
