//! Refresh-token blacklisting (log out), as SimpleJWT's blacklist app.

use crate::auth::jwt::Verified;
use crate::error::{ApiError, ErrorCode};
use crate::service::to_completion;
use crate::state::AppState;
use chat_persistence::tokens::{self, Blacklisted};

/// SimpleJWT's answer for a blacklisted refresh token (401 `token_not_valid`).
fn blacklisted() -> ApiError {
    ApiError::unauthorized(ErrorCode::TokenNotValid, "Token is blacklisted")
}

/// Refuses a refresh token that was blacklisted.
pub async fn check_not_blacklisted(state: &AppState, token: &Verified) -> Result<(), ApiError> {
    let jti = token.jti.clone();
    if state
        .db
        .run(move |c| tokens::is_blacklisted(c, &jti))
        .await?
    {
        return Err(blacklisted());
    }
    Ok(())
}

/// Blacklists a verified refresh token: it is refused from then on. A token
/// blacklisted before (or by a concurrent call) is refused as SimpleJWT
/// does. Runs to its end even if the client hangs up.
pub async fn blacklist(state: &AppState, token: Verified) -> Result<(), ApiError> {
    let db = state.db.clone();
    to_completion(async move {
        let done = db
            .run(move |c| tokens::blacklist(c, &token.jti, token.user, token.expires_at))
            .await?;
        match done {
            Blacklisted::Now => Ok(()),
            Blacklisted::Already => Err(blacklisted()),
        }
    })
    .await
}
