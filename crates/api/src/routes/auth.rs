//! Registration and tokens.

use super::Router;
use crate::auth::jwt::{TokenType, Verified};
use crate::error::{ApiError, ErrorCode};
use crate::extract::{Validator, json_body, required_text, text_field};
use crate::openapi::responses as resp;
use crate::service::tokens;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::{Avatar, NamePart, Password, UserView, Username};
use chat_persistence::PersistenceError;
use chat_persistence::users::{self, NewUser};
use serde::Serialize;
use utoipa::ToSchema;

const REGISTER: &str = "/api/auth/register/";
const TOKEN: &str = "/api/auth/token/";
const REFRESH: &str = "/api/auth/token/refresh/";
const BLACKLIST: &str = "/api/auth/token/blacklist/";

/// `POST /api/auth/register/`, `/api/auth/token/`, `/api/auth/token/refresh/`,
/// `/api/auth/token/blacklist/` (other methods: 405).
pub fn configure(r: &mut Router<'_>) {
    r.resource(REGISTER, |e| e.post(register))
        .resource(TOKEN, |e| e.post(token))
        .resource(REFRESH, |e| e.post(refresh))
        .resource(BLACKLIST, |e| e.post(blacklist));
}

/// `POST /api/auth/register/`.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct RegisterRequest {
    /// 3 to 150 letters, digits and `@.+-_`; unique case-insensitively.
    #[schema(
        min_length = 3,
        max_length = 150,
        pattern = r"^[\w.@+-]+$",
        example = "jdoe"
    )]
    username: String,
    /// 8 to 1024 characters.
    #[schema(
        min_length = 8,
        max_length = 1024,
        write_only,
        example = "correct horse"
    )]
    password: String,
    /// Trimmed; at most 150 characters, no NUL.
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    first_name: Option<String>,
    /// Trimmed; at most 150 characters, no NUL.
    #[schema(max_length = 150, pattern = r"^[^\u0000]*$")]
    last_name: Option<String>,
    /// An `http(s)` URL of at most 2048 characters; null, empty or blank for none.
    #[schema(schema_with = crate::openapi::avatar_input)]
    avatar: Option<String>,
}

/// Register
///
/// Creates an account. Usernames are unique case-insensitively.
#[utoipa::path(post, path = REGISTER, tag = "auth", operation_id = "register",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The new user.", body = UserView),
        (status = 400, response = resp::BadRequest),
        (status = 409, description = "`username_taken`: a user with that username exists.",
            body = ApiError),
        (status = 413, response = resp::PayloadTooLarge),
        (status = 415, response = resp::UnsupportedMediaType),
        (status = 429, response = resp::TooManyRequests),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.check_auth_rate(&req)?;
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
        return Err(Validator::lost_value());
    };
    let password_hash = state.passwords.hash(password.expose().to_owned()).await?;
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
            ErrorCode::UsernameTaken,
            "A user with that username already exists.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/auth/token/`.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct TokenRequest {
    /// Matched case-insensitively.
    username: String,
    /// The password.
    #[schema(write_only)]
    password: String,
}

/// A new access and refresh token pair (HS256 JWTs with SimpleJWT claims).
#[derive(Debug, Serialize, ToSchema)]
struct TokenPair {
    /// Access token (15 minutes by default).
    access: String,
    /// Refresh token (7 days by default).
    refresh: String,
}

/// Log in
///
/// A new access and refresh token pair for a username and password.
#[utoipa::path(post, path = TOKEN, tag = "auth", operation_id = "token_obtain",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The tokens.", body = TokenPair),
        (status = 400, response = resp::BadRequest),
        (status = 401, description = "`invalid_credentials`: wrong username or password.",
            body = ApiError),
        (status = 413, response = resp::PayloadTooLarge),
        (status = 415, response = resp::UnsupportedMediaType),
        (status = 429, response = resp::TooManyRequests),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.check_auth_rate(&req)?;
    let body = json_body(&req, &body, state.settings.limits.max_body_bytes)?;
    let mut v = Validator::default();
    let username = required_text(&mut v, &body, "username");
    let password = required_text(&mut v, &body, "password");
    v.finish()?;
    let (Some(username), Some(password)) = (username, password) else {
        return Err(Validator::lost_value());
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
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matched = state.passwords.verify(password, hash).await?;
    let user = user.filter(|_| matched).ok_or_else(|| {
        ApiError::unauthorized(
            ErrorCode::InvalidCredentials,
            "No active account found with the given credentials.",
        )
    })?;
    Ok(HttpResponse::Ok().json(TokenPair {
        access: state.jwt.mint(user.id, TokenType::Access)?,
        refresh: state.jwt.mint(user.id, TokenType::Refresh)?,
    }))
}

/// The verified refresh token of a `{"refresh"}` body (refresh and
/// blacklist), after the auth rate limit: 400 without it, 401 for one that
/// is invalid, expired or not a refresh token.
fn refresh_token(
    state: &AppState,
    req: &HttpRequest,
    body: &web::Bytes,
) -> Result<Verified, ApiError> {
    state.check_auth_rate(req)?;
    let body = json_body(req, body, state.settings.limits.max_body_bytes)?;
    let mut v = Validator::default();
    let token = required_text(&mut v, &body, "refresh");
    v.finish()?;
    let token = token.ok_or_else(Validator::lost_value)?;
    state.jwt.verify_claims(&token, TokenType::Refresh)
}

/// `POST /api/auth/token/refresh/`.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct RefreshRequest {
    /// A refresh token (an access token is refused).
    refresh: String,
}

/// A new access token (no rotation: the refresh token stays valid).
#[derive(Debug, Serialize, ToSchema)]
struct AccessToken {
    /// Access token.
    access: String,
}

/// Refresh
///
/// A new access token for a refresh token (no rotation).
#[utoipa::path(post, path = REFRESH, tag = "auth", operation_id = "token_refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The new access token.", body = AccessToken),
        (status = 400, response = resp::BadRequest),
        (status = 401, description = "`token_not_valid` (invalid, expired, blacklisted, or not \
            a refresh token) or `user_not_found` (the user no longer exists).", body = ApiError),
        (status = 413, response = resp::PayloadTooLarge),
        (status = 415, response = resp::UnsupportedMediaType),
        (status = 429, response = resp::TooManyRequests),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let token = refresh_token(&state, &req, &body)?;
    tokens::check_not_blacklisted(&state, &token).await?;
    let user_id = token.user;
    match state.db.run(move |c| users::find(c, user_id)).await {
        Ok(user) => Ok(HttpResponse::Ok().json(AccessToken {
            access: state.jwt.mint(user.id, TokenType::Access)?,
        })),
        Err(PersistenceError::NotFound) => Err(ApiError::unauthorized(
            ErrorCode::UserNotFound,
            "User not found.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `POST /api/auth/token/blacklist/`.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "the body's schema; the handler reads the JSON field by field"
)]
struct BlacklistRequest {
    /// The refresh token to give up.
    refresh: String,
}

/// The empty object SimpleJWT answers a blacklisting with.
#[derive(Debug, Serialize, ToSchema)]
struct Empty {}

/// Log out
///
/// Blacklists a refresh token (SimpleJWT's `token_blacklist`): from then on
/// it is refused by refresh and by this endpoint (401 `token_not_valid`,
/// "Token is blacklisted"). Access tokens already minted stay valid until
/// they expire, and open WebSockets are not closed.
#[utoipa::path(post, path = BLACKLIST, tag = "auth", operation_id = "token_blacklist",
    request_body = BlacklistRequest,
    responses(
        (status = 200, description = "Blacklisted.", body = Empty),
        (status = 400, response = resp::BadRequest),
        (status = 401, description = "`token_not_valid`: invalid, expired, already \
            blacklisted, or not a refresh token.", body = ApiError),
        (status = 413, response = resp::PayloadTooLarge),
        (status = 415, response = resp::UnsupportedMediaType),
        (status = 429, response = resp::TooManyRequests),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn blacklist(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let token = refresh_token(&state, &req, &body)?;
    tokens::blacklist(&state, token).await?;
    Ok(HttpResponse::Ok().json(Empty {}))
}
