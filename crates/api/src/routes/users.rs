//! The caller's profile and user look-ups.

use super::Validator;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::path_id;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Avatar, NamePart, UserId, UserView};
use chat_persistence::users::{self, ProfileChanges};
use serde::Deserialize;

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

/// `avatar` distinguishes absent (keep) from `null` (clear).
#[derive(Debug, Deserialize)]
struct ProfileBody {
    first_name: Option<String>,
    last_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    avatar: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn update_me(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<ProfileBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut v = Validator::default();
    let first_name = body
        .first_name
        .as_deref()
        .and_then(|f| v.check("first_name", NamePart::parse(f)));
    let last_name = body
        .last_name
        .as_deref()
        .and_then(|l| v.check("last_name", NamePart::parse(l)));
    let avatar = match body.avatar {
        Some(Some(a)) if !a.trim().is_empty() => v
            .check("avatar", Avatar::parse(&a))
            .map(|a| Some(a.into_string())),
        Some(_) => Some(None),
        None => None,
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
