//! The requests the server makes to an appservice, authenticated with its `hs_token`: whether
//! a user or an alias of its namespace exists (it creates them when asked), a ping, and the
//! third-party lookups of the bridges' networks. Transactions go through [`super::sender`] with
//! the same [`Appservices::call`].

use std::collections::BTreeMap;
use std::time::Instant;

use ruma::api::appservice::HomeserverToken;
use ruma::api::appservice::ping::send_ping;
use ruma::api::appservice::query::{query_room_alias, query_user_id};
use ruma::api::appservice::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_user_for_protocol, get_user_for_user_id,
};
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt};
use ruma::thirdparty::{Location, Protocol, User};
use ruma::{OwnedTransactionId, RoomAliasId, UserId};

use super::{Appservice, Appservices};
use crate::error::{Error, Result};

/// Why a request to an appservice failed.
#[derive(Debug)]
pub enum CallError {
    /// Its registration has no `url`: it only sends requests.
    NoUrl,
    /// It could not be reached, or did not answer in time.
    Unreachable { timed_out: bool, reason: String },
    /// It answered with an error status (or an answer that is not what the spec says).
    Status { status: u16, body: String },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NoUrl => write!(f, "it has no url"),
            CallError::Unreachable { reason, .. } => write!(f, "it cannot be reached: {reason}"),
            CallError::Status { status, body } => write!(f, "it answered {status}: {body}"),
        }
    }
}

/// A request that got no (whole) answer.
fn unreachable(error: reqwest::Error) -> CallError {
    CallError::Unreachable {
        timed_out: error.is_timeout(),
        reason: error.to_string(),
    }
}

/// Whether an appservice that did not answer a query means "no" (404) rather than a failure.
fn not_found(error: &CallError) -> bool {
    matches!(error, CallError::Status { status: 404, .. })
}

impl Appservices {
    /// Sends `request` to `appservice` and parses its answer.
    pub async fn call<T>(&self, appservice: &Appservice, request: T) -> std::result::Result<T::IncomingResponse, CallError>
    where
        T: OutgoingRequest<PathBuilder = SinglePath, Authentication = HomeserverToken>,
    {
        let base_url = appservice.registration.url.as_deref().ok_or(CallError::NoUrl)?;
        let invalid = |reason: String| CallError::Unreachable { timed_out: false, reason };
        let http_request = request
            .try_into_http_request::<Vec<u8>>(base_url.trim_end_matches('/'), &appservice.registration.hs_token, ())
            .map_err(|e| invalid(format!("building the request: {e}")))?;
        let request = reqwest::Request::try_from(http_request.map(reqwest::Body::from)).map_err(|e| invalid(e.to_string()))?;
        let response = self.http.execute(request).await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        let answer = http::Response::builder()
            .status(status)
            .body(body.as_ref())
            .map_err(|e| invalid(e.to_string()))?;
        T::IncomingResponse::try_from_http_response(answer).map_err(|_| CallError::Status {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).chars().take(500).collect(),
        })
    }

    /// Whether an appservice claiming `user` has it (or creates it now): asked through
    /// `GET /_matrix/app/v1/users/{userId}` when this server does not know the user.
    pub async fn query_user(&self, user: &UserId) -> bool {
        self.ask_claimants(
            |appservice| appservice.claims_user(user),
            || query_user_id::v1::Request::new(user.to_owned()),
        )
        .await
    }

    /// Whether an appservice claiming `alias` has created it now: asked through
    /// `GET /_matrix/app/v1/rooms/{alias}` when the alias is unknown.
    pub async fn query_alias(&self, alias: &RoomAliasId) -> bool {
        self.ask_claimants(
            |appservice| appservice.claims_alias(alias),
            || query_room_alias::v1::Request::new(alias.to_owned()),
        )
        .await
    }

    /// Asks each appservice that `claims` the identifier in question until one answers 200.
    async fn ask_claimants<T>(&self, claims: impl Fn(&Appservice) -> bool, request: impl Fn() -> T) -> bool
    where
        T: OutgoingRequest<PathBuilder = SinglePath, Authentication = HomeserverToken>,
    {
        for appservice in self.list().iter().filter(|appservice| claims(appservice)) {
            match self.call(appservice, request()).await {
                Ok(_) => return true,
                Err(error) if not_found(&error) => {}
                Err(error) => tracing::warn!(appservice = appservice.id(), %error, "asking an appservice about a user or alias failed"),
            }
        }
        false
    }

    /// Pings `appservice` (`POST /_matrix/app/v1/ping`); the round trip in milliseconds, or the
    /// spec's error: 400 `M_URL_NOT_SET`, 502 `M_CONNECTION_FAILED` / `M_BAD_STATUS` (with the
    /// appservice's status and body), 504 `M_CONNECTION_TIMEOUT`.
    pub async fn ping(&self, appservice: &Appservice, transaction_id: Option<OwnedTransactionId>) -> Result<u64> {
        let mut request = send_ping::v1::Request::new();
        request.transaction_id = transaction_id;
        let started = Instant::now();
        match self.call(appservice, request).await {
            Ok(_) => Ok(started.elapsed().as_millis() as u64),
            Err(CallError::NoUrl) => Err(Error::url_not_set("The appservice has no url to ping")),
            Err(CallError::Unreachable { timed_out: true, reason }) => Err(Error::connection_timeout(format!(
                "The appservice did not answer in time: {reason}"
            ))),
            Err(CallError::Unreachable { reason, .. }) => {
                Err(Error::connection_failed(format!("The appservice cannot be reached: {reason}")))
            }
            Err(CallError::Status { status, body }) => Err(Error::bad_status(status, body)),
        }
    }
}

impl Appservices {
    /// The protocols the registered bridges serve, as they describe them; each instance gets
    /// the `instance_id` (`<appservice ID>|<network ID>`) `/publicRooms` filters by. An
    /// appservice that does not answer is left out.
    pub async fn protocols(&self, only: Option<&str>) -> BTreeMap<String, Protocol> {
        let mut protocols: BTreeMap<String, Protocol> = BTreeMap::new();
        for appservice in self.list().iter() {
            for name in appservice.protocols().iter().filter(|name| only.is_none_or(|only| only == *name)) {
                let answer = match self.call(appservice, get_protocol::v1::Request::new(name.clone())).await {
                    Ok(answer) => answer,
                    Err(error) => {
                        tracing::warn!(appservice = appservice.id(), protocol = %name, %error, "a bridge did not describe its protocol");
                        continue;
                    }
                };
                let mut protocol: Protocol = answer.protocol.into();
                for instance in &mut protocol.instances {
                    instance.instance_id = Some(format!("{}|{}", appservice.id(), instance.network_id));
                }
                match protocols.get_mut(name) {
                    Some(known) => known.instances.extend(protocol.instances),
                    None => {
                        protocols.insert(name.clone(), protocol);
                    }
                }
            }
        }
        protocols
    }

    /// Asks every appservice that bridges `protocol` (every one, when `None`) and gathers
    /// their answers; one that fails is left out.
    async fn gather<T, R>(&self, protocol: Option<&str>, request: impl Fn() -> T, answers: impl Fn(T::IncomingResponse) -> Vec<R>) -> Vec<R>
    where
        T: OutgoingRequest<PathBuilder = SinglePath, Authentication = HomeserverToken>,
    {
        let mut gathered = Vec::new();
        let list = self.list();
        let asked = list
            .iter()
            .filter(|appservice| protocol.is_none_or(|protocol| appservice.protocols().iter().any(|name| name == protocol)));
        for appservice in asked {
            match self.call(appservice, request()).await {
                Ok(answer) => gathered.extend(answers(answer)),
                Err(error) => tracing::warn!(appservice = appservice.id(), %error, "a bridge's third-party lookup failed"),
            }
        }
        gathered
    }

    /// The portal rooms of `protocol` matching `fields`.
    pub async fn locations(&self, protocol: &str, fields: &BTreeMap<String, String>) -> Vec<Location> {
        let request = || {
            let mut request = get_location_for_protocol::v1::Request::new(protocol.to_owned());
            request.fields = fields.clone();
            request
        };
        self.gather(Some(protocol), request, |answer| answer.locations).await
    }

    /// The users of `protocol` matching `fields`.
    pub async fn users(&self, protocol: &str, fields: &BTreeMap<String, String>) -> Vec<User> {
        let request = || {
            let mut request = get_user_for_protocol::v1::Request::new(protocol.to_owned());
            request.fields = fields.clone();
            request
        };
        self.gather(Some(protocol), request, |answer| answer.users).await
    }

    /// The portal rooms behind a Matrix alias.
    pub async fn locations_of_alias(&self, alias: &RoomAliasId) -> Vec<Location> {
        let request = || get_location_for_room_alias::v1::Request::new(alias.to_owned());
        self.gather(None, request, |answer| answer.locations).await
    }

    /// The third-party users behind a Matrix user.
    pub async fn users_of_user_id(&self, user: &UserId) -> Vec<User> {
        let request = || get_user_for_user_id::v1::Request::new(user.to_owned());
        self.gather(None, request, |answer| answer.users).await
    }
}
