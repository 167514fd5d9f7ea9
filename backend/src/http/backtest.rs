//! `POST /api/v1/backtest` starts the back-test (the last `days` of PVE's history replayed with
//! the effective policy and up to four others); `GET /api/v1/backtest` follows it: progress of
//! the import, then the report. `Sys.Audit` on `/` for both: it reads, it never migrates.

use super::error::HttpError;
use super::extract::Body;
use crate::app::AppState;
use crate::auth::User;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use shared::api::{ApiError, BacktestStart, BacktestStatus};
use shared::backtest::BacktestRequest;
use shared::policy::PolicyView;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Policies one back-test compares besides the effective one.
pub const MAX_POLICIES: usize = 4;
/// Names the report gives its own runs.
const RESERVED: [&str; 3] = ["nobody", "actual", "effective"];

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status, start))
}

#[utoipa::path(get, path = "/api/v1/backtest", responses(
    (status = 200, body = BacktestStatus),
    (status = 401, body = ApiError), (status = 403, body = ApiError),
))]
async fn status(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<BacktestStatus>, HttpError> {
    user.require("/", "Sys.Audit")?;
    Ok(Json(state.backtests.status()))
}

#[utoipa::path(post, path = "/api/v1/backtest", request_body = BacktestStart, responses(
    (status = 202, body = BacktestStatus),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 409, body = ApiError), (status = 500, body = ApiError),
))]
async fn start(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Body(body): Body<BacktestStart>,
) -> Result<(StatusCode, Json<BacktestStatus>), HttpError> {
    user.require("/", "Sys.Audit")?;
    // as the scheduler runs it: its per-cycle cap applies to every replayed run
    let effective = state.policy.resolve_scheduled().await?;
    let request =
        request(&effective, &body).map_err(|(field, detail)| HttpError::bad_input(Some(&field), detail))?;
    if !state.backtests.start(state.pve.clone(), &body, request) {
        return Err(HttpError::conflict(
            "a back-test is running",
            "wait for it: GET /api/v1/backtest shows its progress",
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(state.backtests.status())))
}

/// The checked request, or the offending field and why.
fn request(effective: &PolicyView, body: &BacktestStart) -> Result<BacktestRequest, (String, String)> {
    if !(1..=365).contains(&body.days) {
        return Err((
            "days".into(),
            format!("{} is outside 1–365 days (PVE keeps a year of RRD history)", body.days),
        ));
    }
    if !(1..=1440).contains(&body.interval_mins) {
        return Err(("interval_mins".into(), format!("{} is outside 1–1440 minutes", body.interval_mins)));
    }
    if body.policies.len() > MAX_POLICIES {
        return Err((
            "policies".into(),
            format!("{} policies; compare at most {MAX_POLICIES} at once", body.policies.len()),
        ));
    }
    let mut layers = Vec::new();
    for (i, p) in body.policies.iter().enumerate() {
        let name = p.name.trim();
        let field = format!("policies[{i}].name");
        if name.is_empty() || name.chars().count() > 64 {
            return Err((field, "give the policy a name of 1–64 characters".into()));
        }
        if RESERVED.contains(&name) || layers.iter().any(|(n, _)| n == name) {
            return Err((
                field,
                format!("'{name}' is taken (nobody, actual, effective and each other's names)"),
            ));
        }
        layers.push((name.to_owned(), p.overrides.clone()));
    }
    crate::history::backtest_request(effective, &layers, body.interval_mins).map_err(|(field, detail)| {
        let (name, setting) = field.split_once(": ").unwrap_or(("", &field));
        let i = layers.iter().position(|(n, _)| n == name).unwrap_or(0);
        (format!("policies[{i}].overrides.{setting}"), detail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::BacktestPolicy;
    use shared::policy::PolicyLayer;

    fn effective() -> PolicyView {
        let settings = shared::policy::Settings::default();
        let mut request = shared::PlanRequest::default();
        settings.apply_to(&mut request);
        PolicyView { settings, sources: Default::default(), request, bandwidth: None }
    }

    fn with(policies: Vec<BacktestPolicy>) -> BacktestStart {
        BacktestStart { policies, ..Default::default() }
    }

    fn named(name: &str, overrides: PolicyLayer) -> BacktestPolicy {
        BacktestPolicy { name: name.into(), overrides }
    }

    #[test]
    fn bad_input_names_its_field() {
        let field = |b: &BacktestStart| request(&effective(), b).unwrap_err().0;
        assert_eq!(field(&BacktestStart { days: 0, ..Default::default() }), "days");
        assert_eq!(field(&BacktestStart { interval_mins: 0, ..Default::default() }), "interval_mins");
        assert_eq!(field(&with(vec![named("a", PolicyLayer::default()); 5])), "policies");
        assert_eq!(field(&with(vec![named(" ", PolicyLayer::default())])), "policies[0].name");
        assert_eq!(field(&with(vec![named("nobody", PolicyLayer::default())])), "policies[0].name");
        let bad = PolicyLayer { balanciness: Some(500.0), ..Default::default() };
        let body = with(vec![named("ok", PolicyLayer::default()), named("wild", bad)]);
        assert_eq!(field(&body), "policies[1].overrides.balanciness");
    }

    #[test]
    fn a_good_start_compares_the_effective_policy_and_each_named_one() {
        let calm = PolicyLayer { balanciness: Some(30.0), ..Default::default() };
        let r = request(&effective(), &with(vec![named("calm", calm)])).unwrap();
        let names: Vec<&str> = r.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["effective", "calm"]);
        assert_eq!(r.policies[1].request.balanciness, 30.0);
        assert_eq!(r.interval_secs, 3600);
    }
}
