//! The one extractor every endpoint uses: it parses the ruma request type, authenticates the
//! access token (or, for the federation API, verifies the X-Matrix signature of the origin
//! server), finds the client's IP, and turns every failure into the spec's error. Plus
//! [`RumaResponse`], which serializes a ruma response.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::Method;
use http::request::Parts;
use ruma::api::auth_scheme::{AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken, NoAuthentication};
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::federation::authentication::ServerSignatures;
use ruma::api::path_builder::PathBuilder;
use ruma::api::{IncomingRequest, IncomingRequestExt, Metadata, OutgoingResponse, OutgoingResponseExt};
use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};

use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::devices::Session;

/// Whether an endpoint's ruma authentication scheme wants an access token.
pub trait TokenRequirement {
    const TOKEN: TokenUse;
}

/// How an endpoint uses the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Ignored,
    Optional,
    Required,
    /// A federation request, signed by its origin server (X-Matrix).
    ServerSignatures,
    /// An identity service request, with a token of the built-in identity service.
    IdentityToken,
}

macro_rules! token_use {
    ($($scheme:ty => $use:ident),*) => {
        $(impl TokenRequirement for $scheme { const TOKEN: TokenUse = TokenUse::$use; })*
    };
}

token_use!(
    NoAuthentication => Ignored,
    NoAccessToken => Ignored,
    AccessToken => Required,
    AccessTokenOptional => Optional,
    AppserviceToken => Required,
    AppserviceTokenOptional => Optional,
    ServerSignatures => ServerSignatures,
    ruma::api::identity_service::IdentityServiceToken => IdentityToken
);

/// A parsed, authenticated request of ruma type `T`.
pub struct Ruma<T> {
    pub body: T,
    /// The logged-in user and device, when the request carried a valid access token.
    pub session: Option<Session>,
    /// The client's address (the TCP peer, or the configured proxy header).
    pub ip: IpAddr,
    /// For federation requests: the server that signed the request.
    pub origin: Option<OwnedServerName>,
    /// For identity service requests: the token it carried and the user it belongs to.
    pub identity: Option<IdentitySession>,
}

/// An authenticated request to the built-in identity service.
pub struct IdentitySession {
    pub user_id: OwnedUserId,
    pub token: String,
}

impl<T> Ruma<T> {
    /// The logged-in session; the extractor guarantees it for endpoints that require a token.
    pub fn session(&self) -> Result<&Session> {
        self.session.as_ref().ok_or_else(|| Error::missing_token("Missing access token"))
    }

    /// The verified origin of a federation request; the extractor guarantees it for endpoints
    /// that want a signature.
    pub fn origin(&self) -> Result<&ServerName> {
        self.origin
            .as_deref()
            .ok_or_else(|| Error::unauthorized("Missing X-Matrix authentication"))
    }

    /// The user of an identity service request; the extractor guarantees it for endpoints
    /// that want a token.
    pub fn identity_user(&self) -> Result<&UserId> {
        self.identity
            .as_ref()
            .map(|identity| identity.user_id.as_ref())
            .ok_or_else(|| Error::missing_token("Missing identity server access token"))
    }

    /// The logged-in user.
    pub fn user_id(&self) -> Result<&UserId> {
        Ok(&self.session()?.user_id)
    }

    /// Refuses with 403 unless the logged-in user is `owner` (for a user's own data).
    pub fn require_owner(&self, owner: &UserId, refusal: &str) -> Result<()> {
        if self.user_id()? != owner {
            return Err(Error::forbidden(refusal));
        }
        Ok(())
    }
}

fn access_token(parts: &Parts) -> Option<&str> {
    if let Some(header) = parts.headers.get(http::header::AUTHORIZATION) {
        return header.to_str().ok()?.strip_prefix("Bearer ").map(str::trim);
    }
    parts.uri.query()?.split('&').find_map(|pair| pair.strip_prefix("access_token="))
}

fn client_ip(parts: &Parts, services: &Services) -> IpAddr {
    let forwarded = services.config.client_ip_header.as_deref().and_then(|name| {
        let value = parts.headers.get(name)?.to_str().ok()?;
        value.split(',').next()?.trim().parse().ok()
    });
    forwarded
        .or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip()))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn deserialization_error(error: FromHttpRequestError) -> Error {
    match error {
        FromHttpRequestError::MethodMismatch { .. } => Error::method_not_allowed("Method not allowed for this endpoint"),
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => Error::bad_json(format!("Invalid request body: {e}")),
        FromHttpRequestError::Deserialization(DeserializationError::Ident(e)) => Error::invalid_param(format!("Invalid identifier: {e}")),
        FromHttpRequestError::Deserialization(e) => Error::invalid_param(format!("Invalid request: {e}")),
        other => Error::bad_json(format!("Invalid request: {other}")),
    }
}

/// What every request carries besides its body: the path arguments, the session and the IP.
struct RequestContext {
    path_args: Vec<String>,
    session: Option<Session>,
    ip: IpAddr,
    origin: Option<OwnedServerName>,
    identity: Option<IdentitySession>,
}

/// Reads the path arguments, the client's IP and the access token of a request to a ruma
/// endpoint `T`, refusing a missing or unknown token where `T` needs one.
async fn request_context<T>(parts: &mut Parts, services: &Arc<Services>) -> Result<RequestContext>
where
    T: IncomingRequest,
    <T as Metadata>::Authentication: TokenRequirement,
{
    let mut path_args: Vec<String> = match RawPathParams::from_request_parts(parts, services).await {
        Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
        Err(_) => return Err(Error::invalid_param("A path parameter is not valid UTF-8")),
    };
    // A trailing parameter may be left out when empty (`/state/m.room.name` for the empty
    // state key): the router mounts such paths too, and the missing argument is "".
    let expected = T::PATH_BUILDER.all_paths().next().map_or(0, |path| path.matches('{').count());
    path_args.resize(expected.max(path_args.len()), String::new());
    let ip = client_ip(parts, services);
    if <T::Authentication as TokenRequirement>::TOKEN == TokenUse::IdentityToken {
        let token = access_token(parts).ok_or_else(|| Error::missing_token("Missing identity server access token"))?;
        let user_id = services
            .identity
            .authenticate(token)?
            .ok_or_else(|| Error::unknown_token("Unknown identity server access token"))?;
        return Ok(RequestContext {
            path_args,
            session: None,
            ip,
            origin: None,
            identity: Some(IdentitySession {
                user_id,
                token: token.to_owned(),
            }),
        });
    }
    let session = match (<T::Authentication as TokenRequirement>::TOKEN, access_token(parts)) {
        (TokenUse::Ignored | TokenUse::ServerSignatures | TokenUse::IdentityToken, _) | (TokenUse::Optional, None) => None,
        (TokenUse::Required, None) => return Err(Error::missing_token("Missing access token")),
        (_, Some(token)) => match services.devices.authenticate(token)? {
            Some(session) => Some(session),
            None => match services.appservices.by_token(token) {
                Some(appservice) => Some(appservice_session(parts, services, appservice)?),
                None => return Err(Error::unknown_token("Unknown access token")),
            },
        },
    };
    if let Some(session) = session.as_ref().filter(|session| session.appservice.is_none()) {
        // A locked account may only log out.
        let logging_out = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|route| route.as_str().ends_with("/logout") || route.as_str().ends_with("/logout/all"));
        if !logging_out && services.accounts.is_locked(&session.user_id) {
            return Err(Error::UserLocked);
        }
        services.devices.touch(session, &ip.to_string())?;
    }
    Ok(RequestContext {
        path_args,
        session,
        ip,
        origin: None,
        identity: None,
    })
}

/// The `ts` of a send: honoured for an appservice (imported history), ignored for everyone else.
pub fn appservice_timestamp(session: &Session, ts: Option<ruma::MilliSecondsSinceUnixEpoch>) -> Option<ruma::MilliSecondsSinceUnixEpoch> {
    ts.filter(|_| session.appservice.is_some())
}

/// The device an appservice acts with when it names none.
const APPSERVICE_DEVICE: &str = "APPSERVICE";

/// The session of a request with an appservice's `as_token`: its own user, or the user of its
/// namespace `?user_id=` names (not yet registered only for `/register`), with the device
/// `?device_id=` (or MSC3202's `org.matrix.msc3202.device_id`) names.
fn appservice_session(parts: &Parts, services: &Services, appservice: Arc<crate::service::appservices::Appservice>) -> Result<Session> {
    appservice.alive.notify_one();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let param = |names: &[&str]| {
        query
            .iter()
            .find(|(name, _)| names.contains(&name.as_str()))
            .map(|(_, value)| value.clone())
    };
    let registering = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .is_some_and(|route| route.as_str().ends_with("/register"));
    let user_id = match param(&["user_id"]) {
        Some(user) => {
            let user_id = UserId::parse(&user).map_err(|e| Error::invalid_param(format!("user_id: {e}")))?;
            if !appservice.claims_user(&user_id) {
                return Err(Error::exclusive("The appservice cannot act as a user outside its namespace"));
            }
            if !registering && services.accounts.get(&user_id)?.is_none() {
                return Err(Error::forbidden("The appservice has not registered this user"));
            }
            user_id
        }
        None => appservice.sender.clone(),
    };
    let device_id = match param(&["device_id", "org.matrix.msc3202.device_id"]) {
        Some(device) => {
            let device_id = ruma::OwnedDeviceId::from(device);
            if services.devices.get(&user_id, &device_id)?.is_none() {
                return Err(Error::forbidden("The appservice's user has no such device"));
            }
            device_id
        }
        None => APPSERVICE_DEVICE.into(),
    };
    Ok(Session {
        user_id,
        device_id,
        appservice: Some(appservice),
    })
}

/// For an endpoint that wants a server signature: verifies the request's X-Matrix header
/// against the origin's key, with the body as received.
async fn verify_origin<T>(parts: &Parts, body: &[u8], services: &Services, context: &mut RequestContext) -> Result<()>
where
    T: IncomingRequest,
    <T as Metadata>::Authentication: TokenRequirement,
{
    if <T::Authentication as TokenRequirement>::TOKEN != TokenUse::ServerSignatures {
        return Ok(());
    }
    let mut request = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .body(body)
        .map_err(|e| Error::bad_request(e.to_string()))?;
    *request.headers_mut() = parts.headers.clone();
    context.origin = Some(services.federation.verify_request(&request).await?);
    Ok(())
}

/// How deep a request body may nest objects and arrays. Stored events and the responses that
/// carry them wrap a body's content in a few more levels, and serde_json refuses to read
/// deeper than 128: a limit well below keeps every stored event readable.
const MAX_BODY_NESTING: usize = 64;

/// Whether valid JSON `bytes` nest objects and arrays deeper than `limit` (brackets inside
/// strings do not count).
fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        match (in_string, byte) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b'{' | b'[') => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            (false, b'}' | b']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses ruma request `T` from the request head and `body`.
fn parse<T: IncomingRequest>(parts: Parts, body: &[u8], context: RequestContext) -> Result<Ruma<T>> {
    let args: Vec<&str> = context.path_args.iter().map(String::as_str).collect();
    let body = T::try_from_http_request(http::Request::from_parts(parts, body), &args).map_err(deserialization_error)?;
    Ok(Ruma {
        body,
        session: context.session,
        ip: context.ip,
        origin: context.origin,
        identity: context.identity,
    })
}

impl<T> FromRequest<Arc<Services>> for Ruma<T>
where
    T: IncomingRequest + Send,
    <T as Metadata>::Authentication: TokenRequirement,
{
    type Rejection = Error;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self> {
        let (mut parts, body) = request.into_parts();
        let mut context = request_context::<T>(&mut parts, services).await?;
        let limit = services.config.limits.body_read_timeout;
        let mut bytes = tokio::time::timeout(limit, axum::body::to_bytes(body, services.config.max_request_size))
            .await
            .map_err(|_| Error::request_timeout(format!("The request body did not arrive within {limit:?}")))?
            .map_err(|_| Error::too_large("The request body is too large"))?;
        let sends_body = parts.method == Method::POST || parts.method == Method::PUT;
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        if sends_body && !empty {
            if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
                return Err(Error::not_json("The request body is not valid JSON"));
            }
            if nesting_exceeds(&bytes, MAX_BODY_NESTING) {
                return Err(Error::bad_json(format!(
                    "The request body nests objects and arrays deeper than {MAX_BODY_NESTING} levels"
                )));
            }
        }
        // The signature covers the body as sent.
        verify_origin::<T>(&parts, &bytes, services, &mut context).await?;
        if sends_body && empty {
            // A POST whose fields are all optional may come without a body.
            bytes = Bytes::from_static(b"{}");
        }
        parse(parts, &bytes, context)
    }
}

/// A request whose body is a file, streamed instead of buffered (media uploads): `request` is
/// ruma request `T` parsed from the path, query and headers with an empty body, and `body` is
/// the file for the handler to read.
pub struct RumaStreaming<T> {
    pub request: Ruma<T>,
    pub body: Body,
}

impl<T> FromRequest<Arc<Services>> for RumaStreaming<T>
where
    T: IncomingRequest + Send,
    <T as Metadata>::Authentication: TokenRequirement,
{
    type Rejection = Error;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self> {
        let (mut parts, body) = request.into_parts();
        let mut context = request_context::<T>(&mut parts, services).await?;
        verify_origin::<T>(&parts, &[], services, &mut context).await?;
        let request = parse(parts, &[], context)?;
        Ok(RumaStreaming { request, body })
    }
}

/// A ruma response, serialized as the spec says.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(response) => response.map(|body| Body::from(body.freeze())).into_response(),
            Err(error) => Error::Internal(format!("response serialization: {error}")).into_response(),
        }
    }
}

/// What a handler returns.
pub type HandlerResult<T> = Result<RumaResponse<T>>;
