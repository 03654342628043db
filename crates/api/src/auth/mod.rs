//! Authentication: tokens, password hashing and the extractor every
//! protected route uses.

pub mod jwt;
pub mod password;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use chat_domain::User;
use chat_persistence::{DbConnection, PersistenceError, QueryResult, users};
use jwt::TokenType;
use std::future::Future;
use std::pin::Pin;

/// The authenticated caller, from a valid access token whose user exists.
#[derive(Debug, Clone)]
pub struct AuthUser(pub User);

/// The bearer token of the `Authorization` header, if any.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Checks an access token and loads its user: the one path every route
/// and socket authenticates through. `also` runs in the same pool trip
/// with the user found (a socket loads its conversation there).
pub async fn authenticate_with<T, F>(
    state: &AppState,
    token: &str,
    also: F,
) -> Result<(User, T), ApiError>
where
    F: FnOnce(&mut DbConnection, &User) -> QueryResult<T> + Send + 'static,
    T: Send + 'static,
{
    let user_id = state.jwt.verify(token, TokenType::Access)?;
    let found = state
        .db
        .run(move |c| match users::find(c, user_id) {
            Ok(user) => {
                let extra = also(c, &user)?;
                Ok(Some((user, extra)))
            }
            Err(PersistenceError::NotFound) => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
    found.ok_or_else(|| ApiError::unauthorized(ErrorCode::UserNotFound, "User not found."))
}

/// [`authenticate_with`] and nothing else.
pub async fn authenticate(state: &AppState, token: &str) -> Result<User, ApiError> {
    authenticate_with(state, token, |_, _| Ok(()))
        .await
        .map(|(user, ())| user)
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req
            .app_data::<web::Data<AppState>>()
            .map(|d| d.get_ref().clone());
        let token = bearer_token(req).map(str::to_owned);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::internal_because("no AppState in the app data"))?;
            let token = token.ok_or_else(|| {
                ApiError::unauthorized(
                    ErrorCode::NotAuthenticated,
                    "Authentication credentials were not provided.",
                )
            })?;
            authenticate(&state, &token).await.map(AuthUser)
        })
    }
}
