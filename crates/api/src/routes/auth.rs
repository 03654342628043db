//! Registration and tokens.

use super::Validator;
use crate::auth::jwt::TokenType;
use crate::error::ApiError;
use crate::extract::{json_body, required_text, text_field};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Avatar, NamePart, Password, UserView, Username};
use chat_persistence::PersistenceError;
use chat_persistence::users::{self, NewUser};
use serde_json::json;

/// `POST /api/auth/register/`, `/api/auth/token/`, `/api/auth/token/refresh/`
/// (other methods: 405).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/auth/register/").route(web::post().to(register)))
        .service(web::resource("/api/auth/token/").route(web::post().to(token)))
        .service(web::resource("/api/auth/token/refresh/").route(web::post().to(refresh)));
}

async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, &body, state.settings.limits.max_body_bytes)?;
    let mut v = Validator::default();
    let username = required_text(&mut v, &body, "username")
        .and_then(|u| v.check("username", Username::parse(&u)));
    let password = required_text(&mut v, &body, "password")
        .and_then(|p| v.check("password", Password::parse(&p)));
    let first_name = text_field(&mut v, &body, "first_name")
        .and_then(|f| v.check("first_name", NamePart::parse(f.as_deref().unwrap_or(""))));
    let last_name = text_field(&mut v, &body, "last_name")
        .and_then(|l| v.check("last_name", NamePart::parse(l.as_deref().unwrap_or(""))));
    let avatar = match text_field(&mut v, &body, "avatar") {
        Some(Some(a)) if !a.trim().is_empty() => v.check("avatar", Avatar::parse(&a)).map(Some),
        Some(_) => Some(None),
        None => None,
    };
    v.finish()?;
    let (Some(username), Some(password), Some(first_name), Some(last_name), Some(avatar)) =
        (username, password, first_name, last_name, avatar)
    else {
        return Err(ApiError::internal());
    };
    let passwords = state.passwords.clone();
    let password_hash = web::block(move || passwords.hash(password.expose()))
        .await
        .map_err(|_| ApiError::internal())??;
    let new = NewUser {
        username,
        password_hash,
        first_name: first_name.into_string(),
        last_name: last_name.into_string(),
        avatar: avatar.map(Avatar::into_string),
    };
    match state.db.run(move |c| users::create(c, &new)).await {
        Ok(user) => Ok(HttpResponse::Created().json(UserView::from(&user))),
        Err(PersistenceError::Conflict(_)) => Err(ApiError::conflict(
            "username_taken",
            "A user with that username already exists.",
        )),
        Err(e) => Err(e.into()),
    }
}

async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, &body, state.settings.limits.max_body_bytes)?;
    let mut v = Validator::default();
    let username = required_text(&mut v, &body, "username");
    let password = required_text(&mut v, &body, "password");
    v.finish()?;
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ApiError::internal());
    };
    // No user can have a name that breaks the rules (a NUL, say), so such
    // a login is a wrong credential without a query.
    let found = match Username::parse(&username) {
        Ok(name) => {
            state
                .db
                .run(move |c| users::credentials(c, name.as_str()))
                .await?
        }
        Err(_) => None,
    };
    let passwords = state.passwords.clone();
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matched = web::block(move || passwords.verify(&password, hash.as_deref()))
        .await
        .map_err(|_| ApiError::internal())?;
    let user = user.filter(|_| matched).ok_or_else(|| {
        ApiError::unauthorized(
            "invalid_credentials",
            "No active account found with the given credentials.",
        )
    })?;
    Ok(HttpResponse::Ok().json(json!({
        "access": state.jwt.mint(user.id, TokenType::Access)?,
        "refresh": state.jwt.mint(user.id, TokenType::Refresh)?,
    })))
}

async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, &body, state.settings.limits.max_body_bytes)?;
    let mut v = Validator::default();
    let token = required_text(&mut v, &body, "refresh");
    v.finish()?;
    let token = token.ok_or_else(ApiError::internal)?;
    let user_id = state.jwt.verify(&token, TokenType::Refresh)?;
    match state.db.run(move |c| users::find(c, user_id)).await {
        Ok(user) => {
            Ok(HttpResponse::Ok()
                .json(json!({"access": state.jwt.mint(user.id, TokenType::Access)?})))
        }
        Err(PersistenceError::NotFound) => {
            Err(ApiError::unauthorized("user_not_found", "User not found."))
        }
        Err(e) => Err(e.into()),
    }
}
