//! Every failure a client can see becomes a status and `{"error": "..."}`, so
//! scripts can rely on the body being JSON whatever went wrong.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::EngineError;
use crate::query::QueryError;
use crate::registry::UnknownModel;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A class the model does not have: 400 whose body lists the model's classes.
    #[error("{message}")]
    UnknownClass { message: String, classes: Vec<String> },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// More than [`crate::limits::MAX_HEADER_BYTES`] of headers: 431.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The model's queue is full: 503 with `Retry-After`.
    #[error("{0}")]
    Busy(String),
    /// Nothing can serve this yet (no model loaded): 503.
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Internal(String),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people; names the parameter at fault for a 400.
    pub error: String,
    /// With an unknown `class`: the model's classes, in index order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::UnknownClass { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Busy(_) | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::Busy(_) => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::MethodNotAllowed(_) => {
                res.insert_header((header::ALLOW, "GET, HEAD"));
            }
            _ => {}
        }
        let classes = match self {
            ApiError::UnknownClass { classes, .. } => Some(classes.clone()),
            _ => None,
        };
        res.json(ErrorBody { error: self.to_string(), classes })
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<UnknownModel> for ApiError {
    fn from(e: UnknownModel) -> Self {
        ApiError::NotFound(e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Busy { .. } => ApiError::Busy(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}
