//! Registration and tokens.

use super::Validator;
use crate::auth::jwt::TokenType;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use chat_domain::{Avatar, NamePart, Password, UserView, Username};
use chat_persistence::PersistenceError;
use chat_persistence::users::{self, NewUser};
use serde::Deserialize;
use serde_json::json;

/// `POST /api/auth/register/`, `/api/auth/token/`, `/api/auth/token/refresh/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/auth/register/", web::post().to(register))
        .route("/api/auth/token/", web::post().to(token))
        .route("/api/auth/token/refresh/", web::post().to(refresh));
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    avatar: Option<String>,
}

async fn register(
    state: web::Data<AppState>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut v = Validator::default();
    let username = v
        .required("username", body.username.as_deref())
        .and_then(|u| v.check("username", Username::parse(u)));
    let password = v
        .required("password", body.password.as_deref())
        .and_then(|p| v.check("password", Password::parse(p)));
    let first_name = v.check(
        "first_name",
        NamePart::parse(body.first_name.as_deref().unwrap_or("")),
    );
    let last_name = v.check(
        "last_name",
        NamePart::parse(body.last_name.as_deref().unwrap_or("")),
    );
    let avatar = match body.avatar.as_deref().filter(|a| !a.trim().is_empty()) {
        Some(a) => v.check("avatar", Avatar::parse(a)).map(Some),
        None => Some(None),
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

#[derive(Debug, Deserialize)]
struct TokenBody {
    username: Option<String>,
    password: Option<String>,
}

async fn token(
    state: web::Data<AppState>,
    body: web::Json<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut v = Validator::default();
    let username = v.required("username", body.username);
    let password = v.required("password", body.password);
    v.finish()?;
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ApiError::internal());
    };
    let found = state
        .db
        .run(move |c| users::credentials(c, &username))
        .await?;
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

#[derive(Debug, Deserialize)]
struct RefreshBody {
    refresh: Option<String>,
}

async fn refresh(
    state: web::Data<AppState>,
    body: web::Json<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validator::default();
    let token = v.required("refresh", body.into_inner().refresh);
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
