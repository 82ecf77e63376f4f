//! Outgoing requests to other servers: a ruma request, signed with X-Matrix when its endpoint
//! wants it, sent to where discovery says, with a timeout and a bound on the answer's size.

use futures_util::StreamExt;
use std::time::Duration;

use ruma::api::auth_scheme::{AuthScheme, NoAuthentication};
use ruma::api::federation::authentication::{ServerSignatures, XMatrixSigningInput};
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt};
use ruma::signatures::Ed25519KeyPair;
use ruma::{OwnedServerName, ServerName};

use super::Federation;
use crate::error::{Error, Result};

/// The largest answer read from another server.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// How a federation endpoint's request is authenticated: the input ruma's authentication
/// scheme takes.
pub trait FederationAuth: AuthScheme {
    fn input<'a>(origin: &ServerName, destination: &ServerName, key: &'a Ed25519KeyPair) -> Self::Input<'a>;
}

impl FederationAuth for ServerSignatures {
    fn input<'a>(origin: &ServerName, destination: &ServerName, key: &'a Ed25519KeyPair) -> XMatrixSigningInput<'a> {
        XMatrixSigningInput::new(origin.to_owned(), destination.to_owned(), key)
    }
}

impl FederationAuth for NoAuthentication {
    fn input(_: &ServerName, _: &ServerName, _: &Ed25519KeyPair) {}
}

/// Reads a response body, refusing one larger than `limit` bytes.
pub async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| Error::bad_gateway(format!("reading the answer: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::bad_gateway(format!("the answer is larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl Federation {
    /// Sends each request to its server, all at once, each bounded by `timeout`: the answers
    /// (a server too slow answers with a 502 error) in the order of `requests`.
    pub async fn send_to_each<T>(
        &self,
        requests: Vec<(OwnedServerName, T)>,
        timeout: Duration,
    ) -> Vec<(OwnedServerName, Result<T::IncomingResponse>)>
    where
        T: OutgoingRequest<PathBuilder = SinglePath>,
        T::Authentication: FederationAuth,
    {
        futures_util::future::join_all(requests.into_iter().map(|(server, request)| async move {
            let answer = tokio::time::timeout(timeout, self.send(&server, request))
                .await
                .unwrap_or_else(|_| Err(Error::bad_gateway(format!("{server} did not answer within {timeout:?}"))));
            (server, answer)
        }))
        .await
    }

    /// Sends `request` to `destination` and parses the answer. A server that cannot be reached
    /// or answers nonsense is a 502; a Matrix error it answers is passed on with its status and
    /// errcode.
    pub async fn send<T>(&self, destination: &ServerName, request: T) -> Result<T::IncomingResponse>
    where
        T: OutgoingRequest<PathBuilder = SinglePath>,
        T::Authentication: FederationAuth,
    {
        self.check_server(destination)?;
        let base_url = self.base_url(destination).await?;
        let input = <T::Authentication as FederationAuth>::input(&self.server_name, destination, self.key.pair());
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&base_url, input, ())
            .map_err(|e| Error::Internal(format!("building a request to {destination}: {e}")))?;
        let request = reqwest::Request::try_from(http_request.map(reqwest::Body::from))
            .map_err(|e| Error::Internal(format!("building a request to {destination}: {e}")))?;
        self.policy.check_url(request.url())?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| Error::bad_gateway(format!("{destination} cannot be reached: {e}")))?;
        let status = response.status();
        // Some answers are read from their headers too (a multipart body's boundary).
        let headers = response.headers().clone();
        let body = read_limited(response, MAX_RESPONSE_BYTES).await?;
        let mut response = http::Response::builder()
            .status(status)
            .body(body.as_slice())
            .map_err(|e| Error::Internal(e.to_string()))?;
        *response.headers_mut() = headers;
        T::IncomingResponse::try_from_http_response(response).map_err(|error| {
            let detail = serde_json::from_slice::<serde_json::Value>(&body).ok();
            match detail
                .as_ref()
                .and_then(|d| Some((d.get("errcode")?.as_str()?, d.get("error")?.as_str().unwrap_or(""))))
            {
                Some(("M_NOT_FOUND", message)) => Error::not_found(format!("{destination}: {message}")),
                Some(("M_FORBIDDEN", message)) => Error::forbidden(format!("{destination}: {message}")),
                _ => Error::bad_gateway(format!("{destination} answered {status}: {error}")),
            }
        })
    }
}
