//! The caller's profile and user look-ups.

use super::Router;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{Validator, json_body, path_id, text_field};
use crate::openapi::responses as resp;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Avatar, NamePart, UserId, UserView};
use chat_persistence::users::{self, ProfileChanges};
use utoipa::ToSchema;

const ME: &str = "/api/users/me/";
const USER: &str = "/api/users/{id}/";

/// `GET`/`PATCH /api/users/me/`, `GET /api/users/{id}/`.
pub fn configure(r: &mut Router<'_>) {
    r.resource(ME, |e| e.get(me).patch(update_me))
        .resource(USER, |e| e.get(by_id));
}

/// Your profile
#[utoipa::path(get, path = ME, tag = "users", operation_id = "users_me",
    security(("jwt" = [])),
    responses(
        (status = 200, description = "The caller.", body = UserView),
        (status = 401, response = resp::Unauthorized),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn me(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(UserView::from(&user.0))
}

/// `PATCH /api/users/me/`: only the fields given change; anything else
/// (such as `username` or `password`) is read-only here and ignored.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct ProfileUpdate {
    /// Trimmed, at most 150 characters; null empties it.
    #[schema(max_length = 150)]
    first_name: Option<String>,
    /// Trimmed, at most 150 characters; null empties it.
    #[schema(max_length = 150)]
    last_name: Option<String>,
    /// An `http(s)` URL of at most 2048 characters; null or `""` clears it.
    #[schema(max_length = 2048, format = "uri")]
    avatar: Option<String>,
}

/// Update your profile
///
/// Changes only the fields given: `first_name`, `last_name` (`null` empties
/// a name) and `avatar` (`null` or `""` clears it). Anything else (such as
/// `username` or `password`) is read-only here and ignored.
#[utoipa::path(patch, path = ME, tag = "users", operation_id = "users_me_update",
    security(("jwt" = [])), request_body = ProfileUpdate,
    responses(
        (status = 200, description = "The updated caller.", body = UserView),
        (status = 400, response = resp::BadRequest),
        (status = 401, response = resp::Unauthorized),
        (status = 413, response = resp::PayloadTooLarge),
        (status = 415, response = resp::UnsupportedMediaType),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn update_me(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, &body, state.settings.limits.max_body_bytes)?;
    let mut v = Validator::default();
    let name = |v: &mut Validator, field: &str| match body.get(field) {
        None => None,
        Some(_) => text_field(v, &body, field)
            .and_then(|t| v.check(field, NamePart::parse(t.as_deref().unwrap_or("")))),
    };
    let first_name = name(&mut v, "first_name");
    let last_name = name(&mut v, "last_name");
    let avatar = match body.get("avatar") {
        None => None,
        Some(_) => match text_field(&mut v, &body, "avatar") {
            Some(Some(a)) if !a.trim().is_empty() => v
                .check("avatar", Avatar::parse(&a))
                .map(|a| Some(a.into_string())),
            Some(_) => Some(None),
            None => None,
        },
    };
    v.finish()?;
    let changes = ProfileChanges {
        first_name: first_name.map(NamePart::into_string),
        last_name: last_name.map(NamePart::into_string),
        avatar,
    };
    let id = user.0.id;
    let updated = state
        .db
        .run(move |c| users::update_profile(c, id, changes))
        .await?;
    Ok(HttpResponse::Ok().json(UserView::from(&updated)))
}

/// A user
///
/// Any authenticated user may look up any user.
#[utoipa::path(get, path = USER, tag = "users", operation_id = "users_get",
    security(("jwt" = [])),
    params(("id" = i64, Path, description = "User id.")),
    responses(
        (status = 200, description = "The user.", body = UserView),
        (status = 401, response = resp::Unauthorized),
        (status = 404, response = resp::NotFound),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn by_id(
    state: web::Data<AppState>,
    _user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = UserId(path_id(&req, "id")?);
    let found = state.db.run(move |c| users::find(c, id)).await?;
    Ok(HttpResponse::Ok().json(UserView::from(&found)))
}
