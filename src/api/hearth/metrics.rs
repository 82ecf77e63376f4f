//! Prometheus metrics over HTTP: the middleware that counts every request of the client API,
//! and `GET /metrics`, served on a listener of its own (`metrics.listen`).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{Method, header};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

use crate::error::Error;
use crate::service::Services;
use crate::service::metrics::Endpoint;

/// Middleware: times the request and counts it by route pattern, method and status.
pub async fn record(State(services): State<Arc<Services>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Label values come from a fixed set, so a client cannot grow the number of series.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    };
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    services
        .metrics
        .record_request(Endpoint { method, endpoint }, response.status().as_u16(), started.elapsed());
    response
}

/// The metrics listener's application: `/metrics` and nothing else.
pub fn app(services: Arc<Services>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { Error::unrecognized("Unrecognized request") })
        .with_state(services)
}

/// `GET /metrics`
async fn metrics(State(services): State<Arc<Services>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], services.metrics.encode()).into_response()
}
