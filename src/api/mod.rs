//! HTTP only: routing, request parsing, authentication and response shaping. Handlers call
//! services; nothing here touches the store.

/// A `…/email/requestToken` handler: the endpoints that mail a link confirming an address
/// differ only in their ruma types, why the address is confirmed, and who may ask (an optional
/// check of the request).
macro_rules! email_token_handler {
    ($(#[$doc:meta])* $name:ident, $module:ident::$version:ident, $purpose:expr $(, |$req:ident| $check:expr)?) => {
        $(#[$doc])*
        pub async fn $name(
            axum::extract::State(services): axum::extract::State<std::sync::Arc<crate::service::Services>>,
            req: crate::api::ruma::Ruma<$module::$version::Request>,
        ) -> crate::api::ruma::HandlerResult<$module::$version::Response> {
            $(let $req = &req; $check;)?
            let body = &req.body;
            let sid = services.request_email_token(crate::service::threepids::TokenRequest {
                purpose: $purpose,
                client_secret: body.client_secret.as_str(),
                email: &body.email,
                send_attempt: body.send_attempt.into(),
                next_link: body.next_link.clone(),
                ip: req.ip,
            })?;
            Ok(crate::api::ruma::RumaResponse($module::$version::Response::new(sid)))
        }
    };
}

pub mod client;
pub mod federation;
pub mod hearth;
pub mod identity;
pub mod router;
pub mod ruma;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, Method, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::error::Error;
use crate::service::Services;

/// With `federation.enabled = false`, the server-server API (`/_matrix/federation`,
/// `/_matrix/key`) is not served: 404 `M_UNRECOGNIZED`, as for any unknown path.
async fn federation_switch(
    axum::extract::State(services): axum::extract::State<Arc<Services>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if !services.federation.enabled() && (path.starts_with("/_matrix/federation/") || path.starts_with("/_matrix/key/")) {
        return Error::unrecognized("Federation is disabled on this server").into_response();
    }
    next.run(request).await
}

/// A request that may have written (any method but GET, HEAD and OPTIONS) is answered only
/// once its writes are durable, with `storage.sync_writes` (requests finishing together share
/// one fsync), and, on a database other processes share, visible in this one's stream: the
/// answer is the acknowledgement, and the client reads its writes after it.
async fn acknowledge_durably(
    axum::extract::State(services): axum::extract::State<Arc<Services>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let reads_only = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let response = next.run(request).await;
    if reads_only {
        return response;
    }
    if let Err(error) = services.store.durable().await {
        return Error::from(error).into_response();
    }
    services.rooms.stream().heard_back().await;
    response
}

/// The whole HTTP application: routes plus CORS, panic catching, metrics and request tracing.
pub fn app(services: Arc<Services>) -> Router {
    // The spec's CORS headers, so web clients on any origin (Element Web) can connect.
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            HeaderName::from_static("x-requested-with"),
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
        ])
        .max_age(Duration::from_secs(86400));
    router::router()
        .with_state(services.clone())
        .layer(axum::middleware::from_fn_with_state(services.clone(), federation_switch))
        .layer(axum::middleware::from_fn_with_state(services.clone(), acknowledge_durably))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| -> Response {
            Error::Internal("a request handler panicked".into()).into_response()
        }))
        // Outside the panic catcher, so the 500s it makes are counted too.
        .layer(axum::middleware::from_fn_with_state(services, hearth::metrics::record))
        .layer(cors)
        .layer(TraceLayer::new_for_http())
}
