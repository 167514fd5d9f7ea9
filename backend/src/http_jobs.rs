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

use crate::auth::{AuthError, User};
use crate::execute::{CancelError, ExecEvent, Executor, JournalError, StartError};
use crate::http::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use shared::api::{ApiError, ExecuteRequest, ExecuteResponse, JobState, JobSummary, JobView, StepView};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

impl AppState {
    /// Enables the execution routes with this executor.
    pub fn with_executor(mut self, executor: Arc<Executor>) -> AppState {
        self.jobs = Some(executor);
        self
    }
}

/// Adds the job routes (to the authenticated part of the router).
pub fn add_routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/api/v1/plan/execute", post(execute))
        .route("/api/v1/jobs", get(list))
        .route("/api/v1/jobs/{id}", get(show))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route("/api/v1/jobs/{id}/events", get(events))
}

#[derive(Debug)]
pub struct JobsError {
    status: StatusCode,
    body: ApiError,
}

impl JobsError {
    fn new(status: StatusCode, error: &str, detail: impl Into<String>, field: Option<&str>) -> JobsError {
        JobsError {
            status,
            body: ApiError { error: error.into(), detail: detail.into(), field: field.map(str::to_owned) },
        }
    }

    fn bad_input(field: Option<&str>, detail: impl Into<String>) -> JobsError {
        JobsError::new(StatusCode::BAD_REQUEST, "invalid request", detail, field)
    }

    fn not_found(id: u64) -> JobsError {
        JobsError::new(StatusCode::NOT_FOUND, "no such job", format!("no job {id}"), Some("id"))
    }
}

impl IntoResponse for JobsError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<AuthError> for JobsError {
    fn from(e: AuthError) -> JobsError {
        let (status, body) = e.parts();
        JobsError { status, body }
    }
}

impl From<JournalError> for JobsError {
    fn from(e: JournalError) -> JobsError {
        tracing::error!(error = %e, "journal failed");
        JobsError::new(StatusCode::INTERNAL_SERVER_ERROR, "the execution journal failed", e.to_string(), None)
    }
}

impl From<StartError> for JobsError {
    fn from(e: StartError) -> JobsError {
        match e {
            StartError::Invalid { field, detail } => JobsError::bad_input(Some(field), detail),
            StartError::Busy(_) | StartError::Locked(_) | StartError::Recovering => {
                JobsError::new(StatusCode::CONFLICT, "cannot start a job now", e.to_string(), None)
            }
            StartError::Journal(j) => j.into(),
        }
    }
}

impl From<CancelError> for JobsError {
    fn from(e: CancelError) -> JobsError {
        match e {
            CancelError::NotFound(id) => JobsError::not_found(id),
            CancelError::NotRunning(..) => {
                JobsError::new(StatusCode::CONFLICT, "the job is not running", e.to_string(), None)
            }
            CancelError::Journal(j) => j.into(),
        }
    }
}

fn executor(state: &AppState) -> Result<&Arc<Executor>, JobsError> {
    state.jobs.as_ref().ok_or_else(|| {
        JobsError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "execution is not available",
            "this service runs without an execution journal (see its log)",
            None,
        )
    })
}

fn job_id(path: Result<Path<u64>, PathRejection>) -> Result<u64, JobsError> {
    path.map(|Path(id)| id).map_err(|e| JobsError::bad_input(Some("id"), e.body_text()))
}

/// The caller must be allowed to migrate every guest the steps move.
fn require_migrate<'a>(user: &User, vmids: impl IntoIterator<Item = &'a u32>) -> Result<(), JobsError> {
    for vmid in vmids {
        user.require(&format!("/vms/{vmid}"), "VM.Migrate")?;
    }
    Ok(())
}

async fn execute(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    body: Result<Json<ExecuteRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ExecuteResponse>), JobsError> {
    let ex = executor(&state)?;
    let Json(req) = body.map_err(|e| JobsError::bad_input(None, e.body_text()))?;
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
    crate::http_admin::record(
        &state,
        &user.userid,
        "plan.execute",
        &format!("job/{job_id}"),
        &detail,
        Some(job_id),
    );
    Ok((StatusCode::ACCEPTED, Json(ExecuteResponse { job_id })))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<JobSummary>>, JobsError> {
    user.require("/", "Sys.Audit")?;
    let Query(q) = query.map_err(|e| JobsError::bad_input(Some("limit"), e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(JobsError::bad_input(Some("limit"), format!("{limit} is outside 1–1000")));
    }
    Ok(Json(executor(&state)?.jobs(limit)?))
}

async fn show(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Json<JobView>, JobsError> {
    user.require("/", "Sys.Audit")?;
    let id = job_id(path)?;
    executor(&state)?.job(id)?.map(Json).ok_or_else(|| JobsError::not_found(id))
}

async fn cancel(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<(StatusCode, Json<JobView>), JobsError> {
    let id = job_id(path)?;
    let ex = executor(&state)?;
    let view = ex.job(id)?.ok_or_else(|| JobsError::not_found(id))?;
    require_migrate(&user, view.steps.iter().map(|s| &s.vmid))?;
    ex.cancel(id)?;
    let view = ex.job(id)?.ok_or_else(|| JobsError::not_found(id))?;
    let detail = format!("cancelled with {} of {} steps done", view.job.counts.done, view.steps.len());
    crate::http_admin::record(&state, &user.userid, "job.cancel", &format!("job/{id}"), &detail, Some(id));
    Ok((StatusCode::ACCEPTED, Json(view)))
}

fn step_event(step: &StepView) -> Event {
    Event::default().event("step").json_data(step).unwrap_or_else(|_| Event::default().event("step"))
}

fn end_event(job: &JobSummary) -> Event {
    Event::default().event("end").json_data(job).unwrap_or_else(|_| Event::default().event("end"))
}

async fn events(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    path: Result<Path<u64>, PathRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, JobsError> {
    user.require("/", "Sys.Audit")?;
    let id = job_id(path)?;
    let ex = executor(&state)?;
    // Subscribe before reading the current state, so no change falls between the two.
    let rx = ex.subscribe();
    let view = ex.job(id)?.ok_or_else(|| JobsError::not_found(id))?;
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
