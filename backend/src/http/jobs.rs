//! The execution routes: start a plan, list and inspect jobs, cancel, follow events.
//!
//! - `POST /api/v1/plan/execute` `{plan, steps?: [vmid]}` → 202 `{job_id}`; needs `VM.Migrate` on
//!   every guest the job moves. 409 when a job runs or another executor holds the cluster lock.
//! - `GET /api/v1/jobs?limit=N` → `[JobSummary]`, newest first (`Sys.Audit` on `/`).
//! - `GET /api/v1/jobs/{id}` → `JobView` (job + steps with state, phase, UPID, message).
//! - `POST /api/v1/jobs/{id}/cancel` → 202 `JobView`; needs `VM.Migrate` on the job's guests.
//! - `GET /api/v1/jobs/{id}/events` → server-sent events: `step` (a `StepView`) for the current
//!   state of every step and each change after it, then one `end` (a `JobSummary`); the stream
//!   closes when the job has ended.
//!
//! Errors are `ApiError` JSON like every other route.

use super::error::HttpError;
use super::extract::{Body, PathParam, QueryParams};
use super::openapi::JobEvent;
use crate::app::AppState;
use crate::auth::User;
use crate::execute::{ExecEvent, Executor};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::stream::{self, Stream, StreamExt};
use shared::api::ApiError;
use shared::api::{ExecuteRequest, ExecuteResponse, JobState, JobSummary, JobView, StepView};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The job routes (authenticated).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(execute))
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(cancel))
        .routes(routes!(events))
}

fn executor(state: &AppState) -> Result<&Arc<Executor>, HttpError> {
    state.jobs.as_ref().ok_or_else(HttpError::no_executor)
}

fn not_found(id: u64) -> HttpError {
    HttpError::not_found("no such job", format!("no job {id}"), "id")
}

/// The caller must be allowed to migrate every guest the steps move.
fn require_migrate<'a>(user: &User, vmids: impl IntoIterator<Item = &'a u32>) -> Result<(), HttpError> {
    for vmid in vmids {
        user.require(&format!("/vms/{vmid}"), "VM.Migrate")?;
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/plan/execute", request_body = ExecuteRequest, responses(
    (status = 202, body = ExecuteResponse),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 409, body = ApiError), (status = 500, body = ApiError), (status = 502, body = ApiError),
    (status = 503, body = ApiError),
))]
async fn execute(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Body(req): Body<ExecuteRequest>,
) -> Result<(StatusCode, Json<ExecuteResponse>), HttpError> {
    let ex = executor(&state)?;
    refuse_unbalanced_kinds(&state, &req).await?;
    let selected = req
        .plan
        .steps
        .iter()
        .map(|s| &s.vmid)
        .filter(|v| req.steps.as_ref().is_none_or(|sel| sel.contains(v)));
    require_migrate(&user, selected)?;
    let job_id = ex.start(&req.plan, req.steps.as_deref(), &user.userid)?;
    let moves: Vec<String> = req
        .plan
        .steps
        .iter()
        .filter(|s| req.steps.as_ref().is_none_or(|sel| sel.contains(&s.vmid)))
        .map(|s| format!("{} {} → {}", s.vmid, s.from, s.to))
        .collect();
    let detail = format!("{} steps: {}", moves.len(), moves.join(", "));
    state.audit(&user.userid, "plan.execute", &format!("job/{job_id}"), &detail, Some(job_id));
    Ok((StatusCode::ACCEPTED, Json(ExecuteResponse { job_id })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/jobs", params(("limit" = Option<usize>, Query, description = "1–1000, default 50")),
    responses(
    (status = 200, body = Vec<JobSummary>),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 500, body = ApiError), (status = 503, body = ApiError),
))]
async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<Vec<JobSummary>>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(HttpError::bad_input(Some("limit"), format!("{limit} is outside 1–1000")));
    }
    Ok(Json(executor(&state)?.jobs(limit)?))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(("id" = u64, Path)), responses(
    (status = 200, body = JobView),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 500, body = ApiError), (status = 503, body = ApiError),
))]
async fn show(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    PathParam(id): PathParam<u64>,
) -> Result<Json<JobView>, HttpError> {
    user.require("/", "Sys.Audit")?;
    executor(&state)?.job(id)?.map(Json).ok_or_else(|| not_found(id))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", params(("id" = u64, Path)), responses(
    (status = 202, body = JobView),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 500, body = ApiError),
    (status = 503, body = ApiError),
))]
async fn cancel(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    PathParam(id): PathParam<u64>,
) -> Result<(StatusCode, Json<JobView>), HttpError> {
    let ex = executor(&state)?;
    let view = ex.job(id)?.ok_or_else(|| not_found(id))?;
    require_migrate(&user, view.steps.iter().map(|s| &s.vmid))?;
    ex.cancel(id)?;
    let view = ex.job(id)?.ok_or_else(|| not_found(id))?;
    let detail = format!("cancelled with {} of {} steps done", view.job.counts.done, view.steps.len());
    state.audit(&user.userid, "job.cancel", &format!("job/{id}"), &detail, Some(id));
    Ok((StatusCode::ACCEPTED, Json(view)))
}

fn step_event(step: &StepView) -> Event {
    Event::default().event("step").json_data(step).unwrap_or_else(|_| Event::default().event("step"))
}

fn end_event(job: &JobSummary) -> Event {
    Event::default().event("end").json_data(job).unwrap_or_else(|_| Event::default().event("end"))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/events", params(("id" = u64, Path)), responses(
    (status = 200, description = "server-sent events: `step` (a StepView) per change, `end` (a JobSummary) last",
        content_type = "text/event-stream", body = JobEvent),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 500, body = ApiError), (status = 503, body = ApiError),
))]
async fn events(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    PathParam(id): PathParam<u64>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let ex = executor(&state)?;
    // Subscribe before reading the current state, so no change falls between the two.
    let rx = ex.subscribe();
    let view = ex.job(id)?.ok_or_else(|| not_found(id))?;
    let ended = view.job.state != JobState::Running;
    let mut first: Vec<Event> = view.steps.iter().map(step_event).collect();
    if ended {
        first.push(end_event(&view.job));
    }
    let live = stream::unfold((!ended).then_some(rx), move |rx| async move {
        let mut rx = rx?;
        loop {
            match rx.recv().await {
                Ok(ev) if ev.job_id() != id => continue,
                Ok(ExecEvent::Step { step, .. }) => return Some((step_event(&step), Some(rx))),
                Ok(ExecEvent::End { job }) => return Some((end_event(&job), None)),
                // Missed some changes: the next ones still carry full step states.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let all = stream::iter(first).chain(live).map(Ok);
    Ok(Sse::new(all).keep_alive(KeepAlive::default()))
}

/// Balancing steps of a guest type outside `balance_types` are refused (ProxLB: nothing of
/// that type executes); evacuations and rule repairs are not balancing and pass.
async fn refuse_unbalanced_kinds(state: &AppState, req: &ExecuteRequest) -> Result<(), HttpError> {
    let settings = state.policy_with(Default::default()).await?.settings;
    let selected = |vmid: &u32| req.steps.as_ref().is_none_or(|sel| sel.contains(vmid));
    let refused = req.plan.steps.iter().find(|s| {
        selected(&s.vmid) && s.purpose == shared::plan::StepPurpose::Balance && !settings.executes(s.kind)
    });
    match refused {
        Some(s) => Err(HttpError::conflict(
            "the policy does not execute this guest type",
            format!(
                "step {} moves a {:?} guest but balance_types is {:?}; add it to balance_types (Settings) or leave the step out",
                s.vmid, s.kind, settings.balance_types
            ),
        )),
        None => Ok(()),
    }
}
