//! Request extractors that turn every rejection into our 400 once, naming the field.
//!
//! [`Body`] is strict where axum's `Json` is lenient: the body must be a JSON object (an array,
//! `null` or a string is refused, where serde would read `[]` as a struct of defaults), and an
//! unknown field is refused with the closest known one ("did you mean"), so a misspelt
//! `preveiw` can never start the real action.

use super::error::HttpError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON object body of type `T`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, HttpError> {
        let json =
            req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(
                |ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")),
            );
        if !json {
            return Err(HttpError::bad_input(None, "expected a JSON body (Content-Type: application/json)"));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| HttpError::bad_input(None, format!("cannot read the body: {e}")))?;
        parse(&bytes).map(Body)
    }
}

/// `bytes` as a JSON object of type `T`, or a 400 naming the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| HttpError::bad_input(None, format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        let got = match value {
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Null => "null",
            serde_json::Value::String(_) => "a string",
            _ => "a number or boolean",
        };
        return Err(HttpError::bad_input(None, format!("expected a JSON object {{…}}, got {got}")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        match unknown_field(&inner) {
            Some((field, detail)) => HttpError::bad_input(Some(&qualify(&path, &field)), detail),
            None => {
                let field = (path != ".").then_some(path);
                HttpError::bad_input(field.as_deref(), inner)
            }
        }
    })
}

/// `(field, detail)` from serde's "unknown field `x`, expected one of `a`, `b`".
fn unknown_field(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let hint = crate::config::schema::closest(field, known.iter().copied())
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    Some((field.to_owned(), format!("unknown field `{field}`{hint}; known fields: {}", known.join(", "))))
}

/// The unknown field's full path (serde_path_to_error's path already ends with it).
fn qualify(path: &str, field: &str) -> String {
    match path {
        "." | "" => field.to_owned(),
        p if p == field || p.ends_with(&format!(".{field}")) => p.to_owned(),
        p => format!("{p}.{field}"),
    }
}

/// A path parameter; a bad one is a 400 naming `name`.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParam(v)),
            Err(e) => Err(HttpError::bad_input(Some(path_name(parts)), e.body_text())),
        }
    }
}

/// The path parameter's name as the routes spell it (`{node}`, `{id}`).
fn path_name(parts: &Parts) -> &'static str {
    if parts.uri.path().contains("/jobs/") {
        "id"
    } else {
        "node"
    }
}

/// A query string of type `T`; a bad one is a 400 naming the parameter.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(QueryParams).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            match unknown_field(&inner) {
                Some((field, detail)) => HttpError::bad_input(Some(&field), detail),
                None => HttpError::bad_input((path != ".").then_some(path.as_str()), inner),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::MaintenanceRequest;

    #[test]
    fn a_misspelt_field_is_named_with_the_closest_known_one() {
        let e = parse::<MaintenanceRequest>(br#"{"preveiw": true}"#).unwrap_err();
        assert_eq!((e.status.as_u16(), e.body.field.as_deref()), (400, Some("preveiw")));
        assert!(e.body.detail.contains("did you mean `preview`"), "{}", e.body.detail);
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused() {
        for body in [&b"[]"[..], b"null", b"\"x\"", b"3", b"{"] {
            let e = parse::<MaintenanceRequest>(body).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{}", String::from_utf8_lossy(body));
        }
        assert!(parse::<MaintenanceRequest>(b"{}").is_ok());
    }

    #[test]
    fn a_wrong_type_names_its_field() {
        let e = parse::<shared::policy::PolicyLayer>(br#"{"max_moves": "many"}"#).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("max_moves"));
    }
}
