//! `GET /api/presence/`: the presence of users you are connected to.

use super::Router;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::query_pairs;
use crate::openapi::responses as resp;
use crate::service::presence::{self, PresenceView};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chat_domain::UserId;
use chat_persistence::{connections, users};
use serde::Serialize;
use utoipa::ToSchema;

const PRESENCE: &str = "/api/presence/";
/// Most ids one request may ask about.
const MAX_IDS: usize = 100;

/// `GET /api/presence/`.
pub fn configure(r: &mut Router<'_>) {
    r.resource(PRESENCE, |e| e.get(lookup));
}

/// One user's presence.
#[derive(Debug, Serialize, ToSchema)]
struct UserPresence {
    #[schema(value_type = i64)]
    user_id: UserId,
    #[serde(flatten)]
    presence: PresenceView,
}

/// The answer: only users you are connected to, in the order asked.
#[derive(Debug, Serialize, ToSchema)]
struct PresenceList {
    results: Vec<UserPresence>,
}

/// Presence of users
///
/// `user_ids` is a comma-separated list of at most 100 ids. Users you have
/// no accepted connection with are left out; a user who does not share
/// presence is `offline` with `last_seen` null.
#[utoipa::path(get, path = PRESENCE, tag = "presence", operation_id = "presence_list",
    security(("jwt" = [])),
    params(("user_ids" = String, Query, description = "Comma-separated user ids, at most 100.",
        example = "9,12", pattern = r"^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,99}$")),
    responses(
        (status = 200, description = "Their presence.", body = PresenceList),
        (status = 400, response = resp::BadRequest),
        (status = 401, response = resp::Unauthorized),
        (status = 503, response = resp::ServiceUnavailable),
    ))]
async fn lookup(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let raw = query_pairs(&req)
        .into_iter()
        .find(|(k, _)| k == "user_ids")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let ids = parse_ids(&raw)?;
    let me = user.0.id;
    let known = state
        .db
        .run(move |c| {
            let partners = connections::partners(c, me)?;
            let wanted: Vec<UserId> = ids.into_iter().filter(|id| partners.contains(id)).collect();
            let found = users::find_many(c, &wanted)?;
            // In the order asked.
            Ok(wanted
                .iter()
                .filter_map(|id| found.iter().find(|u| u.id == *id).cloned())
                .collect::<Vec<_>>())
        })
        .await?;
    let online = presence::online(&state, &known.iter().map(|u| u.id).collect::<Vec<_>>()).await?;
    let results = known
        .iter()
        .zip(online)
        .map(|(u, online)| UserPresence {
            user_id: u.id,
            presence: PresenceView::of(u, online),
        })
        .collect();
    Ok(HttpResponse::Ok().json(PresenceList { results }))
}

fn parse_ids(raw: &str) -> Result<Vec<UserId>, ApiError> {
    if raw.trim().is_empty() {
        return Err(ApiError::field("user_ids", "This field is required."));
    }
    let mut ids: Vec<UserId> = Vec::new();
    for part in raw.split(',') {
        let id = part
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| {
                ApiError::field(
                    "user_ids",
                    "A comma-separated list of positive integers is required.",
                )
            })?;
        if !ids.contains(&UserId(id)) {
            ids.push(UserId(id));
        }
    }
    if ids.len() > MAX_IDS {
        return Err(ApiError::field(
            "user_ids",
            format!("Ensure this field has no more than {MAX_IDS} ids."),
        ));
    }
    Ok(ids)
}
