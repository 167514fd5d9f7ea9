//! `GET /api/v1/cluster/history?minutes=N` (Sys.Audit on `/`): the sampler's history of node
//! usage and imbalance (spread, CV) for the panel's sparklines. Answers from memory: no PVE call.

use super::error::HttpError;
use crate::app::AppState;
use crate::auth::User;
use axum::extract::{RawQuery, State};
use axum::{Extension, Json};
use shared::api::ApiError;
use shared::api::HistoryView;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Default window when `minutes` is not given.
pub const DEFAULT_MINUTES: u32 = 60;
/// Longest window one may ask for (7 days); what is shown is bounded by what the sampler keeps.
pub const MAX_MINUTES: u32 = 7 * 24 * 60;

/// The usage history route (authenticated).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(history))
}

#[utoipa::path(get, path = "/api/v1/cluster/history",
    params(("minutes" = Option<u32>, Query, description = "window, 1–10080, default 60")),
    responses(
    (status = 200, body = HistoryView),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 503, body = ApiError),
))]
async fn history(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    RawQuery(query): RawQuery,
) -> Result<Json<HistoryView>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let minutes = minutes(query.as_deref().unwrap_or(""))
        .map_err(|(field, detail)| HttpError::bad_input(Some(&field), detail))?;
    let Some(sampler) = &state.sampler else {
        return Err(HttpError::unavailable(
            "no usage history",
            "this service runs without the sampler (`serve --sample-interval` sets it up)",
        ));
    };
    Ok(Json(sampler.history(minutes)))
}

/// Reads `minutes=N` (1 to [`MAX_MINUTES`]) from the query; any other parameter is an error.
fn minutes(query: &str) -> Result<u32, (String, String)> {
    let mut minutes = DEFAULT_MINUTES;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "minutes" {
            return Err((key.into(), format!("unknown parameter '{key}'; the only one is minutes")));
        }
        minutes = value.parse::<u32>().ok().filter(|m| (1..=MAX_MINUTES).contains(m)).ok_or_else(|| {
            (
                "minutes".to_owned(),
                format!("'{value}' is not a whole number of minutes from 1 to {MAX_MINUTES}"),
            )
        })?;
    }
    Ok(minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_checked_with_the_field_named() {
        assert_eq!(minutes(""), Ok(DEFAULT_MINUTES));
        assert_eq!(minutes("minutes=15"), Ok(15));
        let (field, detail) = minutes("minutes=0").unwrap_err();
        assert_eq!(field, "minutes");
        assert!(detail.contains("from 1 to 10080"), "{detail}");
        assert!(minutes("minutes=abc").is_err());
        assert_eq!(minutes("hours=2").unwrap_err().0, "hours");
    }
}
