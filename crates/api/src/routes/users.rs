//! The caller's profile and user look-ups.

use super::Router;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{Validator, json_body, path_id, text_field};
use crate::openapi::responses as resp;
use crate::service::presence;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Avatar, NamePart, User, UserId, UserView};
use chat_persistence::users::{self, ProfileChanges};
use serde::Serialize;
use serde_json::Value;
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
        (status = 200, description = "The caller, with `share_presence`.", body = MeView),
        (status = 401, response = resp::Unauthorized),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn me(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(MeView::from(&user.0))
}

/// The caller's own user object: the user object and the caller's settings
/// (other users' objects never show them).
#[derive(Debug, Serialize, ToSchema)]
struct MeView {
    /// The user's id.
    #[schema(value_type = i64)]
    id: UserId,
    /// The username, in the case it was registered with.
    username: String,
    /// First name (may be empty).
    first_name: String,
    /// Last name (may be empty).
    last_name: String,
    /// Display name.
    name: String,
    /// Avatar URL, or null.
    #[schema(required = true, format = "uri")]
    avatar: Option<String>,
    /// Whether connections see your presence (default true).
    share_presence: bool,
}

impl From<&User> for MeView {
    fn from(u: &User) -> Self {
        let UserView {
            id,
            username,
            first_name,
            last_name,
            name,
            avatar,
        } = UserView::from(u);
        Self {
            id,
            username,
            first_name,
            last_name,
            name,
            avatar,
            share_presence: u.share_presence,
        }
    }
}

/// `PATCH /api/users/me/`: only the fields given change; anything else
/// (such as `username` or `password`) is read-only here and ignored.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct ProfileUpdate {
    /// Trimmed, at most 150 characters, no NUL; null empties it.
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    first_name: Option<String>,
    /// Trimmed, at most 150 characters, no NUL; null empties it.
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    last_name: Option<String>,
    /// An `http(s)` URL of at most 2048 characters; null, `""` or blank clears it.
    #[schema(schema_with = crate::openapi::avatar_input)]
    avatar: Option<String>,
    /// `false` makes you always appear offline, with `last_seen` null
    /// (null or absent: unchanged).
    share_presence: Option<bool>,
}

/// Update your profile
///
/// Changes only the fields given: `first_name`, `last_name` (`null` empties
/// a name) and `avatar` (`null` or `""` clears it). Anything else (such as
/// `username` or `password`) is read-only here and ignored.
#[utoipa::path(patch, path = ME, tag = "users", operation_id = "users_me_update",
    security(("jwt" = [])), request_body(content = Option<ProfileUpdate>, description = "Optional: an empty body changes nothing."),
    responses(
        (status = 200, description = "The updated caller, with `share_presence`.", body = MeView),
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
    let share_presence = match body.get("share_presence") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            v.add("share_presence", "Must be a boolean.");
            None
        }
    };
    v.finish()?;
    let changes = ProfileChanges {
        first_name: first_name.map(NamePart::into_string),
        last_name: last_name.map(NamePart::into_string),
        avatar,
        share_presence,
    };
    let id = user.0.id;
    let updated = state
        .db
        .run(move |c| users::update_profile(c, id, changes))
        .await?;
    if updated.share_presence != user.0.share_presence {
        presence::sharing_changed(&state, &updated).await;
    }
    Ok(HttpResponse::Ok().json(MeView::from(&updated)))
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
