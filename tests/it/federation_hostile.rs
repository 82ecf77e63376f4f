//! Another server played by the test itself: a space browsed over federation, and a hostile
//! server against Hearth. The test plays a federating server of its own (a TLS
//! listener serving its signing key, requests signed with ruma), joins a room of Hearth's
//! honestly, then sends PDUs with a bad signature, a changed content hash, a sender of a server
//! that did not sign, and a power-levels change it may not make. Only the honest event is shown
//! to clients; the changed one only in its redacted form.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use ruma::api::federation::authentication::XMatrixSigningInput;
use ruma::api::federation::event::get_event_by_timestamp;
use ruma::api::federation::membership::{create_join_event, prepare_join_event};
use ruma::api::federation::transactions::send_transaction_message;
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::serde::Base64;
use ruma::signatures::Ed25519KeyPair;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, RoomVersionId, ServerName};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use crate::common::{free_port, message_bodies};
use crate::federation::{TestCa, send_text, wait_for_message};

/// A TCP listener whose connections are TLS, for the fake server.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.tcp.accept().await else { continue };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Events the fake server serves (`/event`, `/get_missing_events`) and the state before each
/// (`/state_ids`), as the test gives them.
#[derive(Default)]
struct FakeHistory {
    events: HashMap<String, CanonicalJsonObject>,
    state_before: HashMap<String, Vec<String>>,
}

type SharedHistory = Arc<Mutex<FakeHistory>>;

/// The test's own federating server: its name, signing key, an HTTP client, and the history it
/// serves.
struct FakeServer {
    name: OwnedServerName,
    key: Arc<Ed25519KeyPair>,
    http: reqwest::Client,
    history: SharedHistory,
}

impl FakeServer {
    /// Serves `/_matrix/key/v2/server` over TLS with a certificate of the test CA.
    async fn start(ca: &TestCa) -> FakeServer {
        let port = free_port();
        let name = ServerName::parse(format!("127.0.0.1:{port}")).unwrap();
        let key = Arc::new(Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "fake".into()).unwrap());
        let mut document: CanonicalJsonObject = serde_json::from_value(json!({
            "server_name": name,
            "valid_until_ts": MilliSecondsSinceUnixEpoch::now().get() + ruma::UInt::from(3_600_000u32),
            "verify_keys": { "ed25519:fake": { "key": Base64::<ruma::serde::base64::Standard>::new(key.public_key().to_vec()).encode() } },
            "old_verify_keys": {},
        }))
        .unwrap();
        ruma::signatures::sign_json(name.as_str(), &*key, &mut document).unwrap();
        let document = Arc::new(document);
        let history = SharedHistory::default();
        let app = Router::new()
            .route(
                "/_matrix/key/v2/server",
                get(move || {
                    let document = document.clone();
                    async move { axum::Json((*document).clone()) }
                }),
            )
            .route("/_matrix/federation/v1/event/{event_id}", get(serve_event))
            .route("/_matrix/federation/v1/state_ids/{room_id}", get(serve_state_ids))
            .route("/_matrix/federation/v1/get_missing_events/{room_id}", post(serve_missing_events))
            .with_state(history.clone());
        let (certificate, private_key) = ca.issue(&format!("fake{port}"));
        let chain = CertificateDer::pem_file_iter(&certificate)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::from_pem_file(&private_key).unwrap())
            .unwrap();
        let listener = TlsListener {
            tcp: tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        FakeServer { name, key, http, history }
    }

    /// Sends a signed federation request to `destination` and parses the answer.
    async fn send<T>(&self, destination: &str, request: T) -> Result<T::IncomingResponse, String>
    where
        T: OutgoingRequest<
                PathBuilder = ruma::api::path_builder::SinglePath,
                Authentication = ruma::api::federation::authentication::ServerSignatures,
            >,
    {
        let destination = ServerName::parse(destination).unwrap();
        let input = XMatrixSigningInput::new(self.name.clone(), destination.clone(), &self.key);
        let http = request
            .try_into_http_request::<Vec<u8>>(&format!("https://{destination}"), input, ())
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .execute(reqwest::Request::try_from(http.map(reqwest::Body::from)).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        let answer = http::Response::builder().status(status).body(body.as_ref()).unwrap();
        T::IncomingResponse::try_from_http_response(answer).map_err(|e| format!("{status}: {e} {}", String::from_utf8_lossy(&body)))
    }

    /// Signs an event as this server (content hash and signature) for room version 12.
    fn sign(&self, mut event: CanonicalJsonObject) -> CanonicalJsonObject {
        let rules = RoomVersionId::V12.rules().unwrap();
        ruma::signatures::hash_and_sign_event(self.name.as_str(), &*self.key, &mut event, &rules.redaction).unwrap();
        event
    }

    /// Joins `user` of this server to a room of `destination` through make_join and
    /// send_join, as an honest server does; returns the join's event ID and depth.
    async fn join(&self, destination: &str, room: &ruma::RoomId, user: &ruma::UserId) -> (ruma::OwnedEventId, u64) {
        let mut request = prepare_join_event::v1::Request::new(room.to_owned(), user.to_owned());
        request.ver = vec![RoomVersionId::V12];
        let template = self.send(destination, request).await.expect("make_join");
        let mut join: CanonicalJsonObject = serde_json::from_str(template.event.get()).unwrap();
        join.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::from(MilliSecondsSinceUnixEpoch::now().get())),
        );
        let join = self.sign(join);
        let join_id = event_id(&join);
        self.send(
            destination,
            create_join_event::v2::Request::new(room.to_owned(), join_id.clone(), raw(&join)),
        )
        .await
        .expect("send_join");
        let depth = match join.get("depth") {
            Some(CanonicalJsonValue::Integer(depth)) => u64::try_from(i64::from(*depth)).unwrap(),
            _ => panic!("a join without depth"),
        };
        (join_id, depth)
    }
}

/// The event ID of a room version 12 event (its reference hash).
fn event_id(event: &CanonicalJsonObject) -> ruma::OwnedEventId {
    let rules = RoomVersionId::V12.rules().unwrap();
    ruma::OwnedEventId::try_from(format!("${}", ruma::signatures::reference_hash(event, &rules).unwrap())).unwrap()
}

async fn serve_event(State(history): State<SharedHistory>, Path(id): Path<String>) -> axum::response::Response {
    match history.lock().unwrap().events.get(&id) {
        Some(event) => axum::Json(json!({ "origin": "fake", "origin_server_ts": 1, "pdus": [event] })).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve_state_ids(State(history): State<SharedHistory>, Query(query): Query<HashMap<String, String>>) -> axum::response::Response {
    match history.lock().unwrap().state_before.get(&query["event_id"]) {
        Some(state) => axum::Json(json!({ "pdu_ids": state, "auth_chain_ids": [] })).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The events before `latest_events`, newest first, down to `earliest_events` or `limit`.
async fn serve_missing_events(State(history): State<SharedHistory>, axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    let history = history.lock().unwrap();
    let earliest: Vec<&str> = body["earliest_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let limit = body["limit"].as_u64().unwrap_or(10) as usize;
    let mut todo: Vec<String> = body["latest_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|id| {
            let event = history.events.get(id.as_str()?)?;
            Some(serde_json::from_value::<Vec<String>>(serde_json::to_value(&event["prev_events"]).unwrap()).unwrap())
        })
        .flatten()
        .collect();
    let mut events = Vec::new();
    while let Some(id) = todo.pop() {
        if events.len() >= limit || earliest.contains(&id.as_str()) {
            continue;
        }
        let Some(event) = history.events.get(&id) else { continue };
        todo.extend(serde_json::from_value::<Vec<String>>(serde_json::to_value(&event["prev_events"]).unwrap()).unwrap());
        events.push(event.clone());
    }
    axum::Json(json!({ "events": events }))
}

fn object(value: Value) -> CanonicalJsonObject {
    serde_json::from_value(value).unwrap()
}

fn raw(object: &CanonicalJsonObject) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(object).unwrap()
}

/// A Hearth with Alice's public room, and Mallory of the fake server joined to it honestly.
struct Intruder {
    a: crate::common::TestServer,
    a_name: String,
    alice: String,
    room: ruma::OwnedRoomId,
    fake: FakeServer,
    mallory: ruma::OwnedUserId,
    join_id: ruma::OwnedEventId,
    join_depth: u64,
}

impl Intruder {
    async fn join(ca: &TestCa) -> Intruder {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (a, a_name) = ca.server(&[]).await;
        let (alice, _) = a.register("alice", "alicepass").await;
        let (_, created) = a
            .post("/_matrix/client/v3/createRoom", Some(&alice), json!({ "preset": "public_chat" }))
            .await;
        let room = ruma::RoomId::parse(created["room_id"].as_str().unwrap()).unwrap();
        let fake = FakeServer::start(ca).await;
        let mallory = ruma::UserId::parse(format!("@mallory:{}", fake.name)).unwrap();
        let (join_id, join_depth) = fake.join(&a_name, &room, &mallory).await;
        Intruder {
            a,
            a_name,
            alice,
            room,
            fake,
            mallory,
            join_id,
            join_depth,
        }
    }
}

#[tokio::test]
async fn forged_and_unauthorized_pdus_never_reach_clients() {
    let ca = TestCa::new();
    let Intruder {
        a,
        a_name,
        alice,
        room,
        fake,
        mallory,
        join_id,
        ..
    } = Intruder::join(&ca).await;
    let in_event = send_text(&a, &alice, room.as_str(), "mallory is in").await;

    // As a server in the room, Mallory's may ask for the event at a time.
    let request = get_event_by_timestamp::v1::Request::new(room.clone(), MilliSecondsSinceUnixEpoch::now(), ruma::api::Direction::Backward);
    let at = fake.send(&a_name, request).await.expect("timestamp_to_event");
    assert_eq!(at.event_id, in_event.as_str());

    // Events on top of the room's latest one, as Mallory's server would build them.
    let (_, latest) = a
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"), Some(&alice))
        .await;
    let prev = latest["chunk"][0]["event_id"].as_str().unwrap().to_owned();
    let (_, state) = a.get(&format!("/_matrix/client/v3/rooms/{room}/state"), Some(&alice)).await;
    let state_id = |kind: &str, key: &str| {
        state
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind && e["state_key"] == key)
            .unwrap()["event_id"]
            .clone()
    };
    let auth_events = json!([state_id("m.room.power_levels", ""), join_id.as_str()]);
    let event = |sender: &str, kind: &str, content: Value, state_key: Option<&str>, depth: u64| {
        let mut value = json!({
            "room_id": room, "sender": sender, "type": kind, "content": content, "depth": depth,
            "prev_events": [prev], "auth_events": auth_events, "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
        });
        if let Some(state_key) = state_key {
            value["state_key"] = json!(state_key);
        }
        object(value)
    };
    let honest = fake.sign(event(
        mallory.as_str(),
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "honest" }),
        None,
        100,
    ));
    let mut bad_signature = fake.sign(event(
        mallory.as_str(),
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "bad signature" }),
        None,
        101,
    ));
    let signatures = json!({ fake.name.as_str(): { "ed25519:fake": "AAAA" } });
    bad_signature.insert("signatures".into(), serde_json::from_value(signatures).unwrap());
    let mut changed = fake.sign(event(
        mallory.as_str(),
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "original" }),
        None,
        102,
    ));
    changed.insert(
        "content".into(),
        serde_json::from_value(json!({ "msgtype": "m.text", "body": "changed after signing" })).unwrap(),
    );
    let other_sender = fake.sign(event(
        &format!("@eve:{a_name}"),
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "not my user" }),
        None,
        103,
    ));
    let power_grab = fake.sign(event(
        mallory.as_str(),
        "m.room.power_levels",
        json!({ "users": { mallory.as_str(): 100 } }),
        Some(""),
        104,
    ));
    let mut transaction = send_transaction_message::v1::Request::new(
        OwnedTransactionId::from("hostile1"),
        fake.name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    transaction.pdus = [&honest, &bad_signature, &changed, &other_sender, &power_grab]
        .into_iter()
        .map(raw)
        .collect();
    let answer = fake.send(&a_name, transaction).await.expect("send");
    let results: BTreeMap<String, bool> = answer.pdus.iter().map(|(id, result)| (id.to_string(), result.is_ok())).collect();
    assert_eq!(
        results.values().filter(|ok| **ok).count(),
        2,
        "the honest event and the redacted one: {results:?}"
    );

    wait_for_message(&a, &alice, room.as_str(), "honest").await;
    let (_, page) = a
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"), Some(&alice))
        .await;
    let bodies = message_bodies(&page["chunk"]);
    for forged in ["bad signature", "original", "changed after signing", "not my user"] {
        assert!(!bodies.contains(&forged.to_owned()), "{forged:?} reached a client: {page}");
    }
    let redacted = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["sender"] == mallory.as_str() && e["type"] == "m.room.message" && e["content"].as_object().is_some_and(|c| c.is_empty())
        })
        .count();
    assert_eq!(redacted, 1, "the changed event is kept redacted: {page}");
    let (_, levels) = a
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(&alice))
        .await;
    assert!(levels["users"][mallory.as_str()].is_null(), "the power grab was refused: {levels}");
}

#[tokio::test]
async fn a_space_is_browsed_from_another_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new();
    let (a, a_name) = ca.server(&[]).await;
    let (alice, _) = a.register("alice", "alicepass").await;
    let create = async |body: Value| {
        let (_, created) = a.post("/_matrix/client/v3/createRoom", Some(&alice), body).await;
        created["room_id"].as_str().unwrap().to_owned()
    };
    let space = create(json!({ "preset": "public_chat", "name": "Guild", "creation_content": { "type": "m.space" } })).await;
    let open = create(json!({ "preset": "public_chat", "name": "general" })).await;
    let closed = create(json!({ "preset": "private_chat", "name": "staff" })).await;
    for child in [&open, &closed] {
        let (status, _) = a
            .put(
                &format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{child}"),
                Some(&alice),
                json!({ "via": [a_name] }),
            )
            .await;
        assert_eq!(status.as_u16(), 200);
    }
    let fake = FakeServer::start(&ca).await;
    let request = ruma::api::federation::space::get_hierarchy::v1::Request::new(ruma::RoomId::parse(&space).unwrap());
    let hierarchy = fake.send(&a_name, request).await.expect("hierarchy");
    assert_eq!(hierarchy.room.summary.name.as_deref(), Some("Guild"));
    assert_eq!(hierarchy.room.children_state.len(), 2);
    let children: Vec<String> = hierarchy.children.iter().map(|child| child.room_id.to_string()).collect();
    assert_eq!(children, [open]);
    assert_eq!(hierarchy.inaccessible_children, [ruma::RoomId::parse(&closed).unwrap()]);
}

#[tokio::test]
async fn a_gap_wider_than_missing_events_is_filled_with_the_state_at_its_far_end() {
    let ca = TestCa::new();
    let Intruder {
        a,
        a_name,
        alice,
        room,
        fake,
        mallory,
        join_id,
        join_depth,
    } = Intruder::join(&ca).await;
    let (_, state) = a.get(&format!("/_matrix/client/v3/rooms/{room}/state"), Some(&alice)).await;
    let state_id = |kind: &str| {
        state.as_array().unwrap().iter().find(|e| e["type"] == kind).unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (power_levels, join_rules) = (state_id("m.room.power_levels"), state_id("m.room.join_rules"));
    let others: Vec<String> = state
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state_key"] != mallory.as_str())
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    // Alice's server goes on meanwhile: Mallory's events fork from her message.
    send_text(&a, &alice, room.as_str(), "meanwhile").await;

    // Thirty events of Mallory's server on top of the join, the fifth a new display name.
    let mut prev = join_id.to_string();
    let mut member = join_id.to_string();
    let mut last = CanonicalJsonObject::new();
    for i in 1..=30u64 {
        let (kind, content, state_key, auth) = if i == 5 {
            (
                "m.room.member",
                json!({ "membership": "join", "displayname": "Mallory Renamed" }),
                Some(mallory.as_str()),
                json!([power_levels, join_rules, member]),
            )
        } else {
            (
                "m.room.message",
                json!({ "msgtype": "m.text", "body": format!("gap {i}") }),
                None,
                json!([power_levels, member]),
            )
        };
        let mut value = json!({
            "room_id": room, "sender": mallory, "type": kind, "content": content, "depth": join_depth + i,
            "prev_events": [prev], "auth_events": auth, "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
        });
        if let Some(state_key) = state_key {
            value["state_key"] = json!(state_key);
        }
        let event = fake.sign(object(value));
        let id = event_id(&event).to_string();
        let mut history = fake.history.lock().unwrap();
        history
            .state_before
            .insert(id.clone(), others.iter().cloned().chain([member.clone()]).collect());
        history.events.insert(id.clone(), event.clone());
        if i == 5 {
            member = id.clone();
        }
        prev = id;
        last = event;
    }

    // Only the last one is sent: twenty come with get_missing_events, the state before the
    // tenth with /state_ids and /event.
    let mut transaction = send_transaction_message::v1::Request::new(
        OwnedTransactionId::from("gap1"),
        fake.name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    transaction.pdus = vec![raw(&last)];
    let answer = fake.send(&a_name, transaction).await.expect("send");
    assert!(answer.pdus.values().all(Result::is_ok), "{:?}", answer.pdus);

    let (_, page) = a
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), Some(&alice))
        .await;
    let bodies = message_bodies(&page["chunk"]);
    for shown in ["gap 30", "gap 20", "gap 10", "meanwhile"] {
        assert!(bodies.contains(&shown.to_owned()), "{shown:?} is not in the timeline: {bodies:?}");
    }
    assert!(
        !bodies.contains(&"gap 9".to_owned()),
        "an event beyond the gap is an outlier: {bodies:?}"
    );
    let (_, name) = a
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{mallory}"),
            Some(&alice),
        )
        .await;
    assert_eq!(name["displayname"], "Mallory Renamed", "the state at the gap was resolved in");
    // New events of Alice's follow both sides.
    send_text(&a, &alice, room.as_str(), "after the gap").await;
    wait_for_message(&a, &alice, room.as_str(), "after the gap").await;
}
