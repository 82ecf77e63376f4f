//! Bridges: a real appservice framework (mautrix-python, installed by
//! `scripts/appservice-framework`) runs the echo bridge of `tests/appservice/echo_bridge.py`
//! against the server. It is registered while the server runs, gets users' messages and answers
//! as puppets of its namespace, catches up on what it missed while stopped (across a restart of
//! the server too), and the namespaces, tokens, pings, third-party lookups and the bridge's room
//! directory behave as the Application Service API says.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error, free_port, message_bodies};
use crate::federation::eventually;

const AS_TOKEN: &str = "as-secret-echo";
const HS_TOKEN: &str = "hs-secret-echo";

/// The echo bridge's registration, pushing to `port`.
fn registration(port: u16) -> String {
    format!(
        "id: echo
url: http://127.0.0.1:{port}
as_token: {AS_TOKEN}
hs_token: {HS_TOKEN}
sender_localpart: echobot
rate_limited: false
receive_ephemeral: true
org.matrix.msc3202: true
protocols: [echo]
namespaces:
  users:
    - exclusive: true
      regex: '@echo_.*:localhost'
  aliases:
    - exclusive: true
      regex: '#echo_.*:localhost'
  rooms: []
"
    )
}

/// The echo bridge process and the log of the transactions it received.
struct EchoBridge {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    homeserver: String,
}

fn python() -> PathBuf {
    let python = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/mautrix-0.21.0/bin/python");
    assert!(
        python.exists(),
        "mautrix is not installed: run scripts/appservice-framework (scripts/test does)"
    );
    python
}

impl EchoBridge {
    fn new(server: &TestServer, dir: &Path) -> EchoBridge {
        EchoBridge {
            child: None,
            port: free_port(),
            log: dir.join("bridge.jsonl"),
            homeserver: server.base_url.clone(),
        }
    }

    async fn start(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/appservice/echo_bridge.py");
        let child = Command::new(python())
            .arg(script)
            .args([&self.homeserver, "localhost", AS_TOKEN, HS_TOKEN, &self.port.to_string()])
            .arg(&self.log)
            .stdout(Stdio::null())
            .spawn()
            .expect("the echo bridge starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe = format!("http://127.0.0.1:{}/_matrix/mau/live", self.port);
        while !reqwest::get(&probe).await.is_ok_and(|response| response.status().is_success()) {
            assert!(Instant::now() < deadline, "the echo bridge did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every transaction received so far.
    fn transactions(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The bodies of the messages received so far, in the order received.
    fn bodies(&self) -> Vec<String> {
        self.transactions()
            .iter()
            .flat_map(|transaction| message_bodies(&transaction["events"]))
            .collect()
    }

    /// Waits until `check` holds of the transactions received.
    async fn wait_for(&self, what: &str, check: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check(&self.transactions()) {
            assert!(Instant::now() < deadline, "the bridge never got {what}: {:?}", self.transactions());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EchoBridge {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the room's latest messages hold one with `body`; returns that event.
async fn eventually_in_room(server: &TestServer, token: &str, room: &str, body: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = server
            .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"), Some(token))
            .await;
        if let Some(event) = page["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|event| event["content"]["body"] == body)
        {
            return event.clone();
        }
        assert!(Instant::now() < deadline, "{body:?} never showed in the room: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Invites the bridge's bot into a room and waits until it joined (the bridge sees the room's
/// events from then on).
async fn invite_the_bot(server: &TestServer, token: &str, room: &str) {
    let (status, invited) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(token),
            json!({ "user_id": "@echobot:localhost" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{invited}");
    eventually("the bridge's bot joining", async || {
        let (_, members) = server
            .get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(token))
            .await;
        members["joined"].get("@echobot:localhost").is_some()
    })
    .await;
}

/// A server with the echo bridge registered through `hearth admin` and running.
async fn bridged_server() -> (TestServer, EchoBridge) {
    let server = TestServer::start(&[]).await;
    let mut bridge = EchoBridge::new(&server, server.dir.path());
    let file = server.dir.path().join("echo.yaml");
    std::fs::write(&file, registration(bridge.port)).unwrap();
    let (output, _) = server.admin(&["appservice", "register", file.to_str().unwrap()]);
    assert!(output.status.success(), "register: {}", String::from_utf8_lossy(&output.stderr));
    bridge.start().await;
    (server, bridge)
}

#[tokio::test]
async fn the_echo_bridge_answers_as_puppets_and_catches_up_on_what_it_missed() {
    let (mut server, mut bridge) = bridged_server().await;
    let (alice, _) = server.register("alice", "alice-password").await;
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    invite_the_bot(&server, &alice, &room).await;
    server
        .send(
            &alice,
            &room,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": "bridge: hello" }),
        )
        .await;

    // The bridge got the message and its puppet answered in the room.
    bridge
        .wait_for("Alice's message", |_| bridge.bodies().contains(&"bridge: hello".to_owned()))
        .await;
    let echo = eventually_in_room(&server, &alice, &room, "echo: bridge: hello").await;
    assert_eq!(echo["sender"], "@echo_alice:localhost");

    // The bridge is down while Alice writes, and the server restarts meanwhile: once the bridge
    // is back, it gets every missed message once, in order.
    bridge.stop();
    let missed: Vec<String> = (1..=12).map(|n| format!("missed {n}")).collect();
    for body in &missed[..6] {
        server
            .send(&alice, &room, "m.room.message", json!({ "msgtype": "m.text", "body": body }))
            .await;
    }
    server.restart().await;
    for body in &missed[6..] {
        server
            .send(&alice, &room, "m.room.message", json!({ "msgtype": "m.text", "body": body }))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bridge.start().await;
    let received_missed = || -> Vec<String> { bridge.bodies().into_iter().filter(|body| body.starts_with("missed")).collect() };
    bridge
        .wait_for("the missed messages", |_| received_missed().len() >= missed.len())
        .await;
    // Nothing more arrives later: each came once.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(received_missed(), missed);

    // Typing reaches the bridge as an ephemeral event (receive_ephemeral).
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/@alice:localhost"),
            Some(&alice),
            json!({ "typing": true, "timeout": 10000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    bridge
        .wait_for("Alice's typing", |transactions| {
            transactions.iter().any(|transaction| {
                transaction["ephemeral"].as_array().unwrap().iter().any(|event| {
                    event["type"] == "m.typing"
                        && event["content"]["user_ids"]
                            .as_array()
                            .unwrap()
                            .contains(&json!("@alice:localhost"))
                })
            })
        })
        .await;

    // The bridge's puppets get no notifications (as with Synapse): they are the bridge's.
    let (status, notifications) = server
        .get("/_matrix/client/v3/notifications?user_id=%40echo_alice%3Alocalhost", Some(AS_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "{notifications}");
    assert_eq!(notifications["notifications"].as_array().unwrap().len(), 0, "{notifications}");

    // Listed, with what waits for it.
    let (_, listed) = server.admin(&["appservice", "list"]);
    assert_eq!(listed["details"][0]["id"], "echo");
    assert_eq!(listed["details"][0]["registered_by"], "hearth admin");
    assert_eq!(listed["details"][0]["queued"], 0);
}

#[tokio::test]
async fn namespaces_tokens_and_what_only_appservices_may_do() {
    let (server, mut bridge) = bridged_server().await;
    let (alice, alice_device) = server.register("alice", "alice-password").await;
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;

    // Exclusive namespaces: nobody else registers there or takes such an alias.
    let taken = server
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({ "username": "echo_mallory", "password": "pw-mallory", "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_error(&taken, 400, "M_EXCLUSIVE");
    let alias = server
        .put(
            "/_matrix/client/v3/directory/room/%23echo_general:localhost",
            Some(&alice),
            json!({ "room_id": room }),
        )
        .await;
    assert_error(&alias, 400, "M_EXCLUSIVE");

    // The appservice registers a user of its namespace without a password or UIA, and not one
    // outside it; a wrong as_token is refused.
    let register = |name: &str, token: &str| {
        let body = json!({ "type": "m.login.application_service", "username": name });
        let request = server
            .http
            .post(format!("{}/_matrix/client/v3/register", server.base_url))
            .bearer_auth(token)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, registered) = register("echo_bob", AS_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    assert_eq!(registered["user_id"], "@echo_bob:localhost");
    assert_error(&register("bob", AS_TOKEN).await, 400, "M_EXCLUSIVE");
    assert_error(&register("echo_carol", "not-the-token").await, 401, "M_UNKNOWN_TOKEN");
    // The bridge refuses a transaction without its hs_token.
    let forged = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{}/_matrix/app/v1/transactions/forged", bridge.port))
        .bearer_auth("not-the-hs-token")
        .json(&json!({ "events": [] }))
        .send()
        .await
        .unwrap();
    assert!(forged.status().is_client_error(), "{}", forged.status());

    // Masquerading: as a user of its namespace (imported history keeps its timestamp), never
    // as anyone else; an ordinary user's `ts` is ignored.
    let as_bob = |path: &str| format!("{path}?user_id=%40echo_bob%3Alocalhost&ts=1000");
    let send_path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1");
    let (status, joined) = server
        .post(&as_bob(&format!("/_matrix/client/v3/join/{room}")), Some(AS_TOKEN), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let (status, sent) = server
        .put(
            &as_bob(&send_path),
            Some(AS_TOKEN),
            json!({ "msgtype": "m.text", "body": "from the past" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let (_, event) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{}", sent["event_id"].as_str().unwrap()),
            Some(&alice),
        )
        .await;
    assert_eq!(event["sender"], "@echo_bob:localhost");
    assert_eq!(event["origin_server_ts"], 1000);
    let (_, own) = server
        .put(
            &format!("{send_path}?ts=1000"),
            Some(&alice),
            json!({ "msgtype": "m.text", "body": "now" }),
        )
        .await;
    let (_, event) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{}", own["event_id"].as_str().unwrap()),
            Some(&alice),
        )
        .await;
    assert!(event["origin_server_ts"].as_u64().unwrap() > 1000);
    // What bridge frameworks send: a state path with a trailing slash (empty state key), and
    // `?format=event` on a state read.
    let (status, topic) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/?user_id=%40echo_bob%3Alocalhost"),
            Some(AS_TOKEN),
            json!({ "topic": "bridged" }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "echo_bob may not set the topic: {topic}");
    let (status, topic) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            Some(&alice),
            json!({ "topic": "bridged" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{topic}");
    let (_, state) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/?format=event"),
            Some(&alice),
        )
        .await;
    assert_eq!(state["content"]["topic"], "bridged");
    assert_eq!(state["sender"], "@alice:localhost");
    let outside = server
        .get("/_matrix/client/v3/account/whoami?user_id=%40alice%3Alocalhost", Some(AS_TOKEN))
        .await;
    assert_error(&outside, 400, "M_EXCLUSIVE");
    let (_, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(AS_TOKEN)).await;
    assert_eq!(whoami["user_id"], "@echobot:localhost");

    // Encrypted bridges (MSC3202): the bot's own device's key counts, and the device lists of
    // the users its users share rooms with: Alice's new keys, Carol joining and leaving (in
    // one transaction the two net out to "left").
    let (status, bot_login) = server
        .post(
            "/_matrix/client/v3/login",
            Some(AS_TOKEN),
            json!({ "type": "m.login.application_service", "identifier": { "type": "m.id.user", "user": "echobot" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bot_login}");
    let bot_device = bot_login["device_id"].as_str().unwrap().to_owned();
    let one_time_keys = json!({ "one_time_keys": { "signed_curve25519:AAAAAQ": { "key": "a2V5", "signatures": {} } } });
    let (status, uploaded) = server
        .post(
            &format!("/_matrix/client/v3/keys/upload?device_id={bot_device}"),
            Some(AS_TOKEN),
            one_time_keys,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    bridge
        .wait_for("the bot's key counts", |transactions| {
            transactions
                .iter()
                .any(|transaction| transaction["otk_counts"]["@echobot:localhost"][&bot_device]["signed_curve25519"] == 1)
        })
        .await;
    let device_keys = json!({ "device_keys": {
        "user_id": "@alice:localhost", "device_id": alice_device, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": { format!("curve25519:{alice_device}"): "a2V5", format!("ed25519:{alice_device}"): "a2V5" }, "signatures": {},
    } });
    let (status, uploaded) = server.post("/_matrix/client/v3/keys/upload", Some(&alice), device_keys).await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    let (carol, _) = server.register("carol", "carol-password").await;
    server.join(&carol, &room).await;
    let (status, _) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&carol), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let listed = |field: &'static str, user: &'static str| {
        move |transactions: &[Value]| {
            transactions.iter().any(|transaction| {
                transaction["device_lists"][field]
                    .as_array()
                    .is_some_and(|users| users.contains(&json!(user)))
            })
        }
    };
    bridge
        .wait_for("Alice's device-list change", listed("changed", "@alice:localhost"))
        .await;
    bridge
        .wait_for("Carol no longer sharing one", listed("left", "@carol:localhost"))
        .await;

    // Inviting a user of the namespace that does not exist yet asks the bridge, which creates it.
    let (status, invited) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({ "user_id": "@echo_dave:localhost" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{invited}");
    let unknown = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({ "user_id": "@nobody:localhost" }),
        )
        .await;
    assert_error(&unknown, 404, "M_NOT_FOUND");

    // Ping: the server pings the bridge back; only the appservice itself may ask.
    let ping = "/_matrix/client/v1/appservice/echo/ping";
    let (status, pinged) = server.post(ping, Some(AS_TOKEN), json!({ "transaction_id": "p1" })).await;
    assert_eq!(status, StatusCode::OK, "{pinged}");
    assert!(pinged["duration_ms"].is_u64());
    assert_error(&server.post(ping, Some(&alice), json!({})).await, 403, "M_FORBIDDEN");
    assert_error(
        &server
            .post("/_matrix/client/v1/appservice/other/ping", Some(AS_TOKEN), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );

    // Third-party lookups come from the bridge.
    let (status, protocols) = server.get("/_matrix/client/v3/thirdparty/protocols", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{protocols}");
    assert_eq!(protocols["echo"]["instances"][0]["instance_id"], "echo|echo-net");
    let (_, users) = server.get("/_matrix/client/v3/thirdparty/user/echo?name=zed", Some(&alice)).await;
    assert_eq!(users[0]["userid"], "@echo_zed:localhost");
    let (_, locations) = server
        .get("/_matrix/client/v3/thirdparty/location/echo?channel=dev", Some(&alice))
        .await;
    assert_eq!(locations[0]["alias"], "#echo_dev:localhost");
    assert_error(
        &server.get("/_matrix/client/v3/thirdparty/protocol/irc", Some(&alice)).await,
        404,
        "M_NOT_FOUND",
    );

    // The bridge's room directory, listed under its network's instance only.
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/directory/list/appservice/echo-net/{room}"),
            Some(AS_TOKEN),
            json!({ "visibility": "public" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let listed = |filter: Value| server.post("/_matrix/client/v3/publicRooms", Some(&alice), filter);
    let (_, bridged) = listed(json!({ "third_party_instance_id": "echo|echo-net" })).await;
    assert_eq!(bridged["chunk"][0]["room_id"], room.as_str());
    let (_, matrix) = listed(json!({})).await;
    assert_eq!(matrix["chunk"].as_array().unwrap().len(), 0);

    // With the bridge stopped, a ping says so.
    bridge.stop();
    assert_error(&server.post(ping, Some(AS_TOKEN), json!({})).await, 502, "M_CONNECTION_FAILED");
}

#[tokio::test]
async fn a_bad_registration_is_refused_with_its_line_and_reason() {
    let server = TestServer::start(&[]).await;
    let file = server.dir.path().join("bad.yaml");
    let bad = registration(9).replace("'@echo_.*:localhost'", "'@echo_(:localhost'");
    std::fs::write(&file, &bad).unwrap();
    let (output, answer) = server.admin(&["appservice", "register", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("line 13") && error.contains("unclosed group"), "{error}");

    // At start-up, from the configuration: the server does not start, and says why.
    std::fs::write(&file, "id: echo\nurl: [not, a, url\n").unwrap();
    let mut refused = server.command();
    let output = refused
        .env("HEARTH_APPSERVICES__REGISTRATION_FILES", format!("[\"{}\"]", file.display()))
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("appservices.registration_files") && stderr.contains("line 2"),
        "{stderr}"
    );

    // A good file in the configuration registers the appservice and its own user.
    std::fs::write(&file, registration(9)).unwrap();
    let mut configured = TestServer::start(&[("HEARTH_APPSERVICES__REGISTRATION_FILES", &format!("[\"{}\"]", file.display()))]).await;
    let (_, whoami) = configured.get("/_matrix/client/v3/account/whoami", Some(AS_TOKEN)).await;
    assert_eq!(whoami["user_id"], "@echobot:localhost");
    let (_, answer) = configured.admin(&["appservice", "unregister", "echo"]);
    assert!(answer["error"].as_str().unwrap().contains("configuration"), "{answer}");
    configured.stop();
}
