//! HS256 tokens with the claims of djangorestframework-simplejwt, so tokens
//! minted by a Django service sharing the key work here and the reverse.

use crate::error::{ApiError, ErrorCode};
use crate::settings::AuthSettings;
use chat_domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Deserializer, Serialize};

/// `token_type` claim values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Short-lived, for API calls.
    Access,
    /// Long-lived, only for getting new access tokens.
    Refresh,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    token_type: TokenType,
    exp: i64,
    iat: i64,
    jti: String,
    /// SimpleJWT 5.5 writes a string of digits; older versions a number.
    #[serde(deserialize_with = "user_id_number_or_digits")]
    user_id: String,
}

fn user_id_number_or_digits<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n.to_string()),
        Raw::Text(s) => Ok(s),
    }
}

/// A token that passed [`JwtKeys::verify_claims`].
#[derive(Debug, Clone)]
pub struct Verified {
    /// Whose it is.
    pub user: UserId,
    /// Its unique id (SimpleJWT's `jti`), what the blacklist records.
    pub jti: String,
    /// When it expires (`exp`).
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Signing key, lifetimes and the validation rules.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_seconds: i64,
    refresh_seconds: i64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Keys from settings. Only HS256 is accepted (so `alg: none` and
    /// algorithm swaps fail), with the configured leeway.
    pub fn new(settings: &AuthSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway_seconds;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(settings.jwt_secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(settings.jwt_secret.expose().as_bytes()),
            validation,
            access_seconds: settings.access_token_minutes * 60,
            refresh_seconds: settings.refresh_token_days * 86_400,
        }
    }

    /// Mints a token of the given type for `user`.
    pub fn mint(&self, user: UserId, kind: TokenType) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let lifetime = match kind {
            TokenType::Access => self.access_seconds,
            TokenType::Refresh => self.refresh_seconds,
        };
        let claims = Claims {
            token_type: kind,
            exp: now + lifetime,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            user_id: user.0.to_string(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            tracing::error!(error = %e, "token encoding failed");
            ApiError::internal()
        })
    }

    /// Checks signature, expiry and type; returns the user id.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<UserId, ApiError> {
        self.verify_claims(token, expected).map(|v| v.user)
    }

    /// Checks signature, expiry and type; returns what the blacklist needs.
    pub fn verify_claims(&self, token: &str, expected: TokenType) -> Result<Verified, ApiError> {
        let invalid =
            || ApiError::unauthorized(ErrorCode::TokenNotValid, "Token is invalid or expired.");
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|_| invalid())?;
        if data.claims.token_type != expected {
            return Err(ApiError::unauthorized(
                ErrorCode::TokenNotValid,
                "Token has wrong type.",
            ));
        }
        let id = data
            .claims
            .user_id
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(invalid)?;
        let expires_at =
            chrono::DateTime::from_timestamp(data.claims.exp, 0).ok_or_else(invalid)?;
        Ok(Verified {
            user: UserId(id),
            jti: data.claims.jti,
            expires_at,
        })
    }
}
