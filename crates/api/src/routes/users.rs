//! The caller's profile and user look-ups.

use super::Validator;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{json_body, path_id, text_field};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Avatar, NamePart, UserId, UserView};
use chat_persistence::users::{self, ProfileChanges};

/// `GET`/`PATCH /api/users/me/`, `GET /api/users/{id}/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/users/me/")
            .route(web::get().to(me))
            .route(web::patch().to(update_me)),
    )
    .service(web::resource("/api/users/{id}/").route(web::get().to(by_id)));
}

async fn me(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(UserView::from(&user.0))
}

/// Changes only the fields given: `first_name`, `last_name` (`null` empties
/// a name) and `avatar` (`null` or `""` clears it). Anything else (such as
/// `username` or `password`) is read-only here and ignored.
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

async fn by_id(
    state: web::Data<AppState>,
    _user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = UserId(path_id(&req, "id")?);
    let found = state.db.run(move |c| users::find(c, id)).await?;
    Ok(HttpResponse::Ok().json(UserView::from(&found)))
}
