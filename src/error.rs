//! One error type for the whole server. Every failure a client can see maps to a Matrix
//! `errcode` and HTTP status here, so handlers and services only say *what* went wrong.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::client::uiaa::UiaaInfo;
use serde_json::json;

/// Result of anything that can fail with a Matrix error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Matrix error: what the client receives as `{"errcode": …, "error": …}`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A standard Matrix error with its status and errcode.
    #[error("{errcode}: {message}")]
    Matrix {
        status: StatusCode,
        errcode: &'static str,
        message: String,
    },
    /// `M_LIMIT_EXCEEDED` with the time the client should wait.
    #[error("rate limited for {retry_after_ms} ms")]
    LimitExceeded { retry_after_ms: u64 },
    /// User-interactive authentication needs (more) stages: a 401 with the flows, and the
    /// error of the stage just tried, if it failed.
    #[error("user-interactive authentication required")]
    Uia {
        info: Box<UiaaInfo>,
        stage_error: Option<(&'static str, String)>,
    },
    /// 403 `M_WRONG_ROOM_KEYS_VERSION`: keys were sent to a backup version that is not the
    /// current one.
    #[error("wrong room keys version, current is {current_version}")]
    WrongRoomKeysVersion { current_version: String },
    /// 401 `M_UNKNOWN_TOKEN` with `soft_logout`: the access token expired (refresh it).
    #[error("the access token expired")]
    ExpiredToken,
    /// 401 `M_USER_LOCKED` with `soft_logout`: a server admin locked the account.
    #[error("the account is locked")]
    UserLocked,
    /// 502 `M_BAD_STATUS`: the pinged appservice answered with an error, passed on.
    #[error("the appservice answered {status}")]
    BadStatus { status: u16, body: String },
    /// The store failed: the request is not acknowledged and nothing was written.
    #[error("storage: {0}")]
    Storage(String),
    /// Something that should not happen, logged with its cause.
    #[error("internal: {0}")]
    Internal(String),
}

macro_rules! matrix_errors {
    ($($(#[$doc:meta])* $name:ident => $status:ident, $code:literal;)*) => {
        impl Error {
            $(
                $(#[$doc])*
                pub fn $name(message: impl Into<String>) -> Self {
                    Error::Matrix { status: StatusCode::$status, errcode: $code, message: message.into() }
                }
            )*
        }
    };
}

matrix_errors! {
    /// 403 `M_FORBIDDEN`.
    forbidden => FORBIDDEN, "M_FORBIDDEN";
    /// 404 `M_NOT_FOUND`.
    not_found => NOT_FOUND, "M_NOT_FOUND";
    /// 404 `M_UNRECOGNIZED`: no such endpoint.
    unrecognized => NOT_FOUND, "M_UNRECOGNIZED";
    /// 405 `M_UNRECOGNIZED`: the endpoint exists, the method does not.
    method_not_allowed => METHOD_NOT_ALLOWED, "M_UNRECOGNIZED";
    /// 400 `M_NOT_JSON`.
    not_json => BAD_REQUEST, "M_NOT_JSON";
    /// 400 `M_BAD_JSON`.
    bad_json => BAD_REQUEST, "M_BAD_JSON";
    /// 400 `M_INVALID_PARAM`.
    invalid_param => BAD_REQUEST, "M_INVALID_PARAM";
    /// 401 `M_MISSING_TOKEN`.
    missing_token => UNAUTHORIZED, "M_MISSING_TOKEN";
    /// 401 `M_UNAUTHORIZED`: a federation request without a valid signature.
    unauthorized => UNAUTHORIZED, "M_UNAUTHORIZED";
    /// 401 `M_UNKNOWN_TOKEN`.
    unknown_token => UNAUTHORIZED, "M_UNKNOWN_TOKEN";
    /// 400 `M_USER_IN_USE`.
    user_in_use => BAD_REQUEST, "M_USER_IN_USE";
    /// 400 `M_INVALID_USERNAME`.
    invalid_username => BAD_REQUEST, "M_INVALID_USERNAME";
    /// 403 `M_USER_DEACTIVATED`.
    user_deactivated => FORBIDDEN, "M_USER_DEACTIVATED";
    /// 403 `M_USER_SUSPENDED`: a suspended account tried something only active ones may.
    user_suspended => FORBIDDEN, "M_USER_SUSPENDED";
    /// 403 `M_GUEST_ACCESS_FORBIDDEN`.
    guest_access_forbidden => FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN";
    /// 413 `M_TOO_LARGE`.
    too_large => PAYLOAD_TOO_LARGE, "M_TOO_LARGE";
    /// 408 `M_UNKNOWN`: the client took too long to send its request.
    request_timeout => REQUEST_TIMEOUT, "M_UNKNOWN";
    /// 400 `M_UNKNOWN`: a bad request the spec gives no better code for.
    bad_request => BAD_REQUEST, "M_UNKNOWN";
    /// 504 `M_NOT_YET_UPLOADED`: the media ID exists, its content does not yet.
    not_yet_uploaded => GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED";
    /// 400 `M_UNSUPPORTED_ROOM_VERSION`.
    unsupported_room_version => BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION";
    /// 400 `M_INCOMPATIBLE_ROOM_VERSION`: the joining server does not support the room's version.
    incompatible_room_version => BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION";
    /// 400 `M_ROOM_IN_USE`: `createRoom`'s alias is taken.
    room_in_use => BAD_REQUEST, "M_ROOM_IN_USE";
    /// 409 `M_UNKNOWN`: the room alias exists already.
    alias_exists => CONFLICT, "M_UNKNOWN";
    /// 502 `M_UNKNOWN`: a server this one fetched from failed.
    bad_gateway => BAD_GATEWAY, "M_UNKNOWN";
    /// 400 `M_UNKNOWN_POS`: a sliding-sync position the server no longer knows.
    unknown_pos => BAD_REQUEST, "M_UNKNOWN_POS";
    /// 409 `M_CANNOT_OVERWRITE_MEDIA`: the media ID already has content.
    cannot_overwrite_media => CONFLICT, "M_CANNOT_OVERWRITE_MEDIA";
    /// 400 `M_THREEPID_NOT_FOUND`: no account has that address.
    threepid_not_found => BAD_REQUEST, "M_THREEPID_NOT_FOUND";
    /// 400 `M_THREEPID_IN_USE`: an account has that address already.
    threepid_in_use => BAD_REQUEST, "M_THREEPID_IN_USE";
    /// 400 `M_THREEPID_AUTH_FAILED`: the address was not confirmed.
    threepid_auth_failed => BAD_REQUEST, "M_THREEPID_AUTH_FAILED";
    /// 400 `M_THREEPID_MEDIUM_NOT_SUPPORTED`: no mail on this server, or not an email address.
    threepid_medium_not_supported => BAD_REQUEST, "M_THREEPID_MEDIUM_NOT_SUPPORTED";
    /// 400 `M_INVALID_PEPPER` (identity service): the lookup used another pepper.
    invalid_pepper => BAD_REQUEST, "M_INVALID_PEPPER";
    /// 403 `M_SERVER_NOT_TRUSTED`: an identity server other than this one.
    server_not_trusted => FORBIDDEN, "M_SERVER_NOT_TRUSTED";
    /// 400 `M_EXCLUSIVE`: an appservice claims that user name or alias for itself.
    exclusive => BAD_REQUEST, "M_EXCLUSIVE";
    /// 400 `M_URL_NOT_SET`: the appservice to ping has no url.
    url_not_set => BAD_REQUEST, "M_URL_NOT_SET";
    /// 502 `M_CONNECTION_FAILED`: the appservice cannot be reached.
    connection_failed => BAD_GATEWAY, "M_CONNECTION_FAILED";
    /// 504 `M_CONNECTION_TIMEOUT`: the appservice did not answer in time.
    connection_timeout => GATEWAY_TIMEOUT, "M_CONNECTION_TIMEOUT";
}

impl Error {
    /// 502 `M_BAD_STATUS` with what the appservice answered.
    pub fn bad_status(status: u16, body: String) -> Self {
        Error::BadStatus { status, body }
    }

    /// The HTTP status and the JSON body the client receives.
    pub fn status_and_body(&self) -> (StatusCode, serde_json::Value) {
        match self {
            Error::Matrix { status, errcode, message } => (*status, json!({ "errcode": errcode, "error": message })),
            Error::LimitExceeded { retry_after_ms } => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({
                    "errcode": "M_LIMIT_EXCEEDED",
                    "error": "Too many requests, slow down",
                    "retry_after_ms": retry_after_ms,
                }),
            ),
            Error::Uia { info, stage_error } => {
                let mut body = serde_json::to_value(info).unwrap_or_else(|_| json!({}));
                if let (Some((errcode, message)), Some(fields)) = (stage_error, body.as_object_mut()) {
                    fields.insert("errcode".into(), json!(errcode));
                    fields.insert("error".into(), json!(message));
                }
                (StatusCode::UNAUTHORIZED, body)
            }
            Error::WrongRoomKeysVersion { current_version } => (
                StatusCode::FORBIDDEN,
                json!({
                    "errcode": "M_WRONG_ROOM_KEYS_VERSION",
                    "error": "That backup version is not the current one",
                    "current_version": current_version,
                }),
            ),
            Error::ExpiredToken => (
                StatusCode::UNAUTHORIZED,
                json!({ "errcode": "M_UNKNOWN_TOKEN", "error": "The access token expired", "soft_logout": true }),
            ),
            Error::UserLocked => (
                StatusCode::UNAUTHORIZED,
                json!({ "errcode": "M_USER_LOCKED", "error": "This account has been locked by the server's admins", "soft_logout": true }),
            ),
            Error::BadStatus { status, body } => (
                StatusCode::BAD_GATEWAY,
                json!({ "errcode": "M_BAD_STATUS", "error": "The appservice answered with an error", "status": status, "body": body }),
            ),
            Error::Storage(_) | Error::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "errcode": "M_UNKNOWN", "error": "Internal server error" }),
            ),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Internal(format!("file system: {error}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Internal(format!("stored JSON does not parse: {error}"))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if matches!(self, Error::Storage(_) | Error::Internal(_)) {
            tracing::error!(error = %self, "request failed");
        }
        let (status, body) = self.status_and_body();
        (status, axum::Json(body)).into_response()
    }
}
