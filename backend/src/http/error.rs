//! The one error type of the HTTP API and its one mapping: every failure a handler can meet
//! becomes an `ApiError` body `{error, detail, field?}` with the same status wherever it happens
//! (bad input 400, no credentials 401, no privilege 403, unknown thing 404, conflict 409, PVE
//! failed 502, a part of the service off 503, our own state failed 500).

use crate::app::PlanNowError;
use crate::auth::AuthError;
use crate::execute::{CancelError, JournalError, StartError};
use crate::maintenance::MaintError;
use crate::pve::PveError;
use crate::settings::SettingsFailure;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use shared::api::ApiError;

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub body: ApiError,
}

impl HttpError {
    pub fn new(status: StatusCode, error: &str, detail: impl Into<String>, field: Option<&str>) -> HttpError {
        HttpError {
            status,
            body: ApiError { error: error.into(), detail: detail.into(), field: field.map(str::to_owned) },
        }
    }

    pub fn bad_input(field: Option<&str>, detail: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "invalid request", detail, field)
    }

    pub fn not_found(error: &str, detail: impl Into<String>, field: &str) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, error, detail, Some(field))
    }

    pub fn conflict(error: &str, detail: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::CONFLICT, error, detail, None)
    }

    pub fn unavailable(error: &str, detail: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, error, detail, None)
    }

    /// Our own state failed (journal, state files): logged, 500.
    pub fn internal(error: &str, detail: impl std::fmt::Display) -> HttpError {
        tracing::error!(%detail, "{error}");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, error, detail.to_string(), None)
    }

    /// Execution needs a journal; without one the job routes say why they are off.
    pub fn no_executor() -> HttpError {
        HttpError::unavailable(
            "execution is not available",
            "this service runs without an execution journal (see its log)",
        )
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<PveError> for HttpError {
    fn from(e: PveError) -> HttpError {
        tracing::warn!(error = %e, "PVE call failed");
        // The PVE API is our upstream: its failures are a bad gateway, with PVE's own words.
        HttpError::new(StatusCode::BAD_GATEWAY, "the PVE API call failed", e.to_string(), None)
    }
}

impl From<AuthError> for HttpError {
    fn from(e: AuthError) -> HttpError {
        let (status, body) = e.parts();
        HttpError { status, body }
    }
}

impl From<JournalError> for HttpError {
    fn from(e: JournalError) -> HttpError {
        HttpError::internal("the execution journal failed", e)
    }
}

impl From<StartError> for HttpError {
    fn from(e: StartError) -> HttpError {
        match e {
            StartError::Invalid { field, detail } => HttpError::bad_input(Some(field), detail),
            StartError::Journal(j) => j.into(),
            other => HttpError::conflict("cannot start a job now", other.to_string()),
        }
    }
}

impl From<CancelError> for HttpError {
    fn from(e: CancelError) -> HttpError {
        match e {
            CancelError::NotFound(id) => HttpError::not_found("no such job", format!("no job {id}"), "id"),
            CancelError::NotRunning(..) => HttpError::conflict("the job is not running", e.to_string()),
            CancelError::Journal(j) => j.into(),
        }
    }
}

impl From<SettingsFailure> for HttpError {
    fn from(e: SettingsFailure) -> HttpError {
        match e {
            SettingsFailure::Invalid(i) => HttpError::bad_input(Some(i.field), i.detail),
            SettingsFailure::Store(s) => HttpError::internal("the stored settings failed", s),
        }
    }
}

impl From<PlanNowError> for HttpError {
    fn from(e: PlanNowError) -> HttpError {
        match e {
            PlanNowError::Pve(e) => e.into(),
            PlanNowError::Maintenance(e) => e.into(),
            PlanNowError::Policy(e) => e.into(),
        }
    }
}

impl From<MaintError> for HttpError {
    fn from(e: MaintError) -> HttpError {
        let detail = e.to_string();
        match e {
            MaintError::UnknownNode(_) => HttpError::not_found("no such node", detail, "node"),
            MaintError::BadNode(_) => HttpError::bad_input(Some("node"), detail),
            MaintError::Conflict(_) => HttpError::conflict("maintenance conflict", detail),
            MaintError::Pve(p) => p.into(),
            MaintError::HaManager(_) => HttpError::new(
                StatusCode::BAD_GATEWAY,
                "PVE HA maintenance could not be changed",
                detail,
                None,
            ),
            MaintError::State { .. } => HttpError::internal("the maintenance state failed", detail),
            MaintError::NoExecutor => HttpError::unavailable("execution is not available", detail),
            MaintError::Forbidden(a) => a.into(),
            MaintError::Start(s) => s.into(),
        }
    }
}
