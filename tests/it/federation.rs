//! Federation between Hearths on loopback over TLS, with certificates from a throw-away CA
//! that each server trusts through `federation.trusted_ca_file`: server keys and the notary,
//! signed requests verified (and unsigned or forged ones refused), profile and alias queries
//! answered across servers, and servers that do not federate.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::{TestServer, assert_error, free_port};

/// A throw-away certificate authority issuing loopback certificates.
pub struct TestCa {
    dir: TempDir,
    pub certificate: PathBuf,
    key: PathBuf,
}

fn openssl(args: &[&str], cwd: &Path) {
    let output = Command::new("openssl").args(args).current_dir(cwd).output().expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=Hearth test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            dir.path(),
        );
        TestCa {
            certificate: dir.path().join("ca.pem"),
            key: dir.path().join("ca.key"),
            dir,
        }
    }

    /// A certificate for 127.0.0.1 and 127.0.0.2 signed by the CA: (certificate, key) paths.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        let extensions = dir.join(format!("{name}.ext"));
        std::fs::write(
            &extensions,
            "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let (key, csr, cert) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
            dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                self.certificate.to_str().unwrap(),
                "-CAkey",
                self.key.to_str().unwrap(),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                extensions.to_str().unwrap(),
                "-out",
                &cert,
            ],
            dir,
        );
        (dir.join(cert), dir.join(key))
    }

    /// Starts a federating server named `127.0.0.1:<port>` with its own certificate; `env`
    /// adds to or overrides its configuration.
    pub async fn server(&self, env: &[(&str, &str)]) -> (TestServer, String) {
        self.server_at("127.0.0.1", env).await
    }

    /// Like `server`, on another loopback address (servers on different hosts, as server ACLs
    /// tell them apart).
    pub async fn server_at(&self, ip: &str, env: &[(&str, &str)]) -> (TestServer, String) {
        let port = free_port();
        let name = format!("{ip}:{port}");
        let (certificate, key) = self.issue(&port.to_string());
        let mut all: Vec<(&str, &str)> = vec![
            ("HEARTH_SERVER_NAME", &name),
            ("HEARTH_TLS__CERTIFICATE", certificate.to_str().unwrap()),
            ("HEARTH_TLS__KEY", key.to_str().unwrap()),
            ("HEARTH_FEDERATION__TRUSTED_CA_FILE", self.certificate.to_str().unwrap()),
            ("HEARTH_FEDERATION__ALLOWED_NETWORKS", r#"["127.0.0.0/8"]"#),
        ];
        all.extend_from_slice(env);
        let server = TestServer::start_at(ip, port, &all).await;
        (server, name)
    }
}

/// Two federating servers, A with `a_env` and Alice, B with Bob: (A, its name, B, its name,
/// Alice's token, Bob's token).
pub async fn alice_and_bob(ca: &TestCa, a_env: &[(&str, &str)]) -> (TestServer, String, TestServer, String, String, String) {
    let (a, a_name) = ca.server(a_env).await;
    let (b, b_name) = ca.server(&[]).await;
    let (alice, _) = a.register("alice", "alicepass").await;
    let (bob, _) = b.register("bob", "bobpassword").await;
    (a, a_name, b, b_name, alice, bob)
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn hearths_verify_each_other_and_answer_queries() {
    let ca = TestCa::new();
    let (a, a_name) = ca.server(&[]).await;
    let (b, b_name) = ca.server(&[]).await;

    let (status, version) = a.get("/_matrix/federation/v1/version", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version["server"]["name"], "Hearth");

    // B, as a notary, fetches A's keys over TLS and co-signs them.
    let (status, notary) = b.get(&format!("/_matrix/key/v2/query/{a_name}"), None).await;
    assert_eq!(status, StatusCode::OK, "{notary}");
    let document = &notary["server_keys"][0];
    assert_eq!(document["server_name"], a_name.as_str());
    assert!(
        document["signatures"][&a_name].is_object() && document["signatures"][&b_name].is_object(),
        "{document}"
    );
    let (_, own) = a.get("/_matrix/key/v2/server", None).await;
    assert_eq!(document["verify_keys"], own["verify_keys"]);
    let (status, batch) = b
        .post(
            "/_matrix/key/v2/query",
            None,
            json!({ "server_keys": { &a_name: {}, &b_name: {}, "127.0.0.1:1": {} } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let mut names: Vec<&str> = batch["server_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["server_name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    let mut expected = vec![a_name.as_str(), b_name.as_str()];
    expected.sort_unstable();
    assert_eq!(names, expected, "an unreachable server gives no document");

    // Alice on A has a profile and a room with an alias; Bob on B sees both through signed
    // requests, which A verifies with B's key.
    let (alice, _) = a.register("alice", "alicepass").await;
    let alice_id = format!("@alice:{a_name}");
    a.put(
        &format!("/_matrix/client/v3/profile/{alice_id}/displayname"),
        Some(&alice),
        json!({ "displayname": "Alice of A" }),
    )
    .await;
    let (_, created) = a
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "room_alias_name": "fed", "visibility": "public", "name": "Federated lobby" }),
        )
        .await;
    let (bob, _) = b.register("bob", "bobpassword").await;
    let (status, profile) = b.get(&format!("/_matrix/client/v3/profile/{alice_id}"), Some(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "Alice of A");
    let (_, field) = b
        .get(&format!("/_matrix/client/v3/profile/{alice_id}/displayname"), Some(&bob))
        .await;
    assert_eq!(field["displayname"], "Alice of A");
    assert_error(
        &b.get(&format!("/_matrix/client/v3/profile/@nobody:{a_name}"), Some(&bob)).await,
        404,
        "M_NOT_FOUND",
    );
    let alias = format!("#fed:{a_name}");
    let (status, resolved) = b
        .get(&format!("/_matrix/client/v3/directory/room/{}", encode(&alias)), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["room_id"], created["room_id"]);
    assert_eq!(resolved["servers"], json!([a_name]));
    assert_error(
        &b.get(
            &format!("/_matrix/client/v3/directory/room/{}", encode(&format!("#none:{a_name}"))),
            Some(&bob),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );

    // A's public room directory, as Bob's server fetches it.
    let (status, directory) = b.get(&format!("/_matrix/client/v3/publicRooms?server={a_name}"), Some(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{directory}");
    assert_eq!(directory["chunk"][0]["room_id"], created["room_id"], "{directory}");
    let (_, searched) = b
        .post(
            &format!("/_matrix/client/v3/publicRooms?server={a_name}"),
            Some(&bob),
            json!({ "filter": { "generic_search_term": "lobby" } }),
        )
        .await;
    assert_eq!(searched["chunk"][0]["name"], "Federated lobby", "{searched}");

    // Unsigned and forged requests are refused before any handler runs.
    let query = format!("/_matrix/federation/v1/query/profile?user_id={}", encode(&alice_id));
    assert_error(&a.get(&query, None).await, 401, "M_UNAUTHORIZED");
    let (_, b_keys) = b.get("/_matrix/key/v2/server", None).await;
    let b_key_id = b_keys["verify_keys"].as_object().unwrap().keys().next().unwrap().clone();
    for header in [
        format!(
            r#"X-Matrix origin="{b_name}",destination="{a_name}",key="{b_key_id}",sig="dGhpcyBpcyBub3QgYSBzaWduYXR1cmUgYXQgYWxsIG5vIHNpciwgbm90IGF0IGFsbCEhISEhISEhISEhISE""#
        ),
        format!(r#"X-Matrix origin="{b_name}",destination="{a_name}",key="ed25519:nope",sig="AAAA""#),
        "X-Matrix garbage".to_owned(),
    ] {
        let response = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap()
            .request(Method::GET, format!("{}{query}", a.base_url))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_error(&(status, body), 401, "M_UNAUTHORIZED");
    }
}

#[tokio::test]
async fn servers_that_do_not_federate_are_refused() {
    let ca = TestCa::new();
    let (closed, closed_name) = ca.server(&[("HEARTH_FEDERATION__ENABLED", "false")]).await;
    let (open, open_name) = ca.server(&[]).await;
    let denied = format!(r#"["{open_name}"]"#);
    let (picky, picky_name) = ca.server(&[("HEARTH_FEDERATION__DENIED_SERVERS", &denied)]).await;

    for path in ["/_matrix/federation/v1/version", "/_matrix/key/v2/server"] {
        assert_error(&closed.get(path, None).await, 404, "M_UNRECOGNIZED");
    }
    let (user, _) = open.register("olive", "olivepass").await;
    let (carl, _) = closed.register("carl", "carlpass").await;
    picky.register("pat", "patpass1").await;
    // The closed server answers nothing; the picky one refuses the open one.
    let (status, _) = open
        .get(&format!("/_matrix/client/v3/profile/@carl:{closed_name}"), Some(&user))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_error(
        &open
            .get(&format!("/_matrix/client/v3/profile/@pat:{picky_name}"), Some(&user))
            .await,
        403,
        "M_FORBIDDEN",
    );
    // And the closed server sends nothing either.
    assert_error(
        &closed
            .get(&format!("/_matrix/client/v3/profile/@olive:{open_name}"), Some(&carl))
            .await,
        403,
        "M_FORBIDDEN",
    );
}

/// Waits (up to ten seconds) until a message with `body` is in the room's history as `token`'s
/// user sees it on `server`; returns the event.
pub async fn wait_for_message(server: &TestServer, token: &str, room: &str, body: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, page) = server
            .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), Some(token))
            .await;
        if let Some(event) = page["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["content"]["body"] == body)
        {
            return event.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{body:?} never arrived: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn send_text(server: &TestServer, token: &str, room: &str, body: &str) -> String {
    let txn = format!("t{}", rand_suffix(body));
    let (status, sent) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            Some(token),
            json!({ "msgtype": "m.text", "body": body }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    sent["event_id"].as_str().unwrap().to_owned()
}

fn rand_suffix(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[tokio::test]
async fn users_of_two_hearths_join_each_others_rooms_and_chat() {
    let ca = TestCa::new();
    let (a, a_name, b, b_name, alice, bob) = alice_and_bob(&ca, &[]).await;
    let (alice_id, bob_id) = (format!("@alice:{a_name}"), format!("@bob:{b_name}"));

    // Alice's public room on A; Bob on B joins it by its alias.
    let (_, created) = a
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "preset": "public_chat", "room_alias_name": "lobby", "name": "Lobby" }),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    send_text(&a, &alice, &room, "before bob came").await;
    let (status, joined) = b
        .post(
            &format!("/_matrix/client/v3/join/{}", encode(&format!("#lobby:{a_name}"))),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["room_id"], room.as_str());

    // Bob's server has the room's state: its name and both members.
    let (status, name) = b
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "Lobby");
    let (_, members) = b.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(&bob)).await;
    assert!(
        members["joined"][&alice_id].is_object() && members["joined"][&bob_id].is_object(),
        "{members}"
    );
    let (_, members) = a
        .get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(&alice))
        .await;
    assert!(members["joined"][&bob_id].is_object(), "Alice's server has Bob's join: {members}");

    // History from before the join is paged back from A, down to the room's creation.
    wait_for_message(&b, &bob, &room, "before bob came").await;
    let (_, history) = b
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), Some(&bob))
        .await;
    let types: Vec<&str> = history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types.last(), Some(&"m.room.create"), "{history}");
    assert!(history["end"].is_null(), "the whole history is there: {history}");

    // Messages both ways, with the same event IDs on both servers.
    let to_bob = send_text(&a, &alice, &room, "hello bob").await;
    assert_eq!(wait_for_message(&b, &bob, &room, "hello bob").await["event_id"], to_bob.as_str());
    let to_alice = send_text(&b, &bob, &room, "hello alice").await;
    assert_eq!(
        wait_for_message(&a, &alice, &room, "hello alice").await["event_id"],
        to_alice.as_str()
    );

    // Bob's message from the other server counts as unread for Alice, as a local one would.
    let (_, alice_sync) = a.get("/_matrix/client/v3/sync", Some(&alice)).await;
    let unread = &alice_sync["rooms"]["join"][&room]["unread_notifications"]["notification_count"];
    assert!(unread.as_u64().is_some_and(|n| n >= 1), "{alice_sync}");

    // Bob's sync shows the room, named, with the conversation.
    let (_, sync) = b.get("/_matrix/client/v3/sync", Some(&bob)).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    let bodies: Vec<&str> = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert!(bodies.contains(&"hello bob") && bodies.contains(&"hello alice"), "{sync}");

    // And the other way round: Alice joins Bob's room by its ID through Bob's server.
    let (_, bobs) = b
        .post("/_matrix/client/v3/createRoom", Some(&bob), json!({ "preset": "public_chat" }))
        .await;
    let bobs_room = bobs["room_id"].as_str().unwrap();
    let (status, joined) = a
        .post(
            &format!("/_matrix/client/v3/join/{bobs_room}?via={b_name}"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let hi = send_text(&a, &alice, bobs_room, "hi from A").await;
    assert_eq!(wait_for_message(&b, &bob, bobs_room, "hi from A").await["event_id"], hi.as_str());
}

#[tokio::test]
async fn invites_power_levels_and_a_server_that_was_down() {
    let ca = TestCa::new();
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let (a, a_name, mut b, b_name, alice, bob) = alice_and_bob(&ca, &[("HEARTH_METRICS__LISTEN", &metrics_address)]).await;
    let bob_id = format!("@bob:{b_name}");

    // Alice invites Bob to a private room; the invite reaches Bob's sync with the room's name.
    let (_, created) = a
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "preset": "private_chat", "name": "Secret", "invite": [] }),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let (status, invited) = a
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({ "user_id": bob_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{invited}");
    let (_, sync) = b.get("/_matrix/client/v3/sync", Some(&bob)).await;
    let invite_state = &sync["rooms"]["invite"][&room]["invite_state"]["events"];
    let names: Vec<&Value> = invite_state
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.name")
        .collect();
    assert_eq!(names[0]["content"]["name"], "Secret", "{sync}");
    assert!(
        invite_state
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str())
    );

    // Bob accepts by joining with the room ID alone: the inviting server lets him in.
    let (status, joined) = b
        .post(&format!("/_matrix/client/v3/rooms/{room}/join"), Some(&bob), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let welcome = send_text(&a, &alice, &room, "welcome").await;
    assert_eq!(wait_for_message(&b, &bob, &room, "welcome").await["event_id"], welcome.as_str());

    // Power levels set on A are honoured on B: Bob may not rename the room until promoted.
    let rename = |name: &'static str| json!({ "name": name });
    let (status, _) = b
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            Some(&bob),
            rename("Bob's"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, levels) = a
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(&alice))
        .await;
    let mut levels = levels;
    levels["users"][&bob_id] = json!(100);
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"),
            Some(&alice),
            levels,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = b
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
                Some(&bob),
                rename("Bob's"),
            )
            .await;
        if status == StatusCode::OK {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the promotion never reached B");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, name) = a
            .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), Some(&alice))
            .await;
        if name["name"] == "Bob's" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Bob's rename never reached A: {name}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // B is down while Alice writes; once it is back, everything arrives, once, in order.
    b.stop();
    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(send_text(&a, &alice, &room, &format!("while away {n}")).await);
    }
    b.restart().await;
    wait_for_message(&b, &bob, &room, "while away 4").await;
    let (_, page) = b
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), Some(&bob))
        .await;
    let received: Vec<String> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| e["content"]["body"].as_str().is_some_and(|body| body.starts_with("while away")))
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(received, sent, "in order, each once");
    // B shows the events while it takes in the transaction, before A hears its answer and
    // empties the queue: A's status is looked at until it has.
    let mut line = Value::Null;
    for _ in 0..100 {
        let (_, status) = a.admin(&["federation", "status"]);
        line = status["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| line["destination"] == b_name.as_str())
            .cloned()
            .expect("B is a destination");
        if line["queued"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(line["queued"], 0, "{line}");
    assert!(line["last_success_ts"].is_u64(), "{line}");
    let metrics = reqwest::get(format!("http://{metrics_address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent_line = metrics
        .lines()
        .find(|line| line.starts_with("hearth_federation_transactions_sent_total"))
        .unwrap_or_default();
    assert!(
        sent_line
            .split(' ')
            .nth(1)
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|n| n >= 2.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("hearth_federation_pdus_received_total{outcome=\"accepted\"}"),
        "{metrics}"
    );

    // Bob invites Alice to a room on B; she declines through B.
    let (_, bobs) = b
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&bob),
            json!({ "preset": "private_chat", "invite": [format!("@alice:{a_name}")] }),
        )
        .await;
    let bobs_room = bobs["room_id"].as_str().unwrap();
    let (status, left) = a
        .post(&format!("/_matrix/client/v3/rooms/{bobs_room}/leave"), Some(&alice), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{left}");
    let (_, members) = b.get(&format!("/_matrix/client/v3/rooms/{bobs_room}/members"), Some(&bob)).await;
    let alice_membership = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state_key"] == format!("@alice:{a_name}"))
        .map(|e| e["content"]["membership"].clone());
    assert_eq!(alice_membership, Some(json!("leave")), "{members}");
}

/// The event IDs of a room's current state, by type and state key, as a server tells them.
async fn state_ids(server: &TestServer, token: &str, room: &str) -> std::collections::BTreeMap<(String, String), String> {
    let (status, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let key = (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap().to_owned());
            (key, e["event_id"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn split_servers_resolve_conflicting_state_alike() {
    let ca = TestCa::new();
    let (a, _, mut b, b_name, alice, bob) = alice_and_bob(&ca, &[]).await;
    let bob_id = format!("@bob:{b_name}");
    let (_, created) = a
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "preset": "public_chat", "name": "Before", "power_level_content_override": { "users": { &bob_id: 100 } } }),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let (status, joined) = b
        .post(
            &format!("/_matrix/client/v3/join/{room}?via={}", a.base_url.trim_start_matches("https://")),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    send_text(&a, &alice, &room, "together").await;
    wait_for_message(&b, &bob, &room, "together").await;

    // Split: each side changes the name and the power levels on its own.
    b.stop();
    let set = async |server: &TestServer, token: &str, kind: &str, content: Value| {
        let (status, body) = server
            .put(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), Some(token), content)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    };
    set(&a, &alice, "m.room.name", json!({ "name": "Alice's side" })).await;
    let (_, mut levels) = a
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(&alice))
        .await;
    levels["events_default"] = json!(10);
    set(&a, &alice, "m.room.power_levels", levels.clone()).await;
    let a_alone = send_text(&a, &alice, &room, "A alone").await;
    // B comes back unable to reach A: it writes on its own fork.
    b.restart().await;
    let a_address = a.base_url.trim_start_matches("https://").to_owned();
    set(&b, &bob, "m.room.name", json!({ "name": "Bob's side" })).await;
    levels["events_default"] = json!(20);
    set(&b, &bob, "m.room.power_levels", levels).await;
    let b_alone = send_text(&b, &bob, &room, "B alone").await;

    // Reunited (both senders retry): each side gets the other's fork and resolves the same.
    a.admin(&["federation", "retry", &b_name]);
    b.admin(&["federation", "retry", &a_address]);
    assert_eq!(wait_for_message(&b, &bob, &room, "A alone").await["event_id"], a_alone.as_str());
    assert_eq!(wait_for_message(&a, &alice, &room, "B alone").await["event_id"], b_alone.as_str());
    let on_a = state_ids(&a, &alice, &room).await;
    let on_b = state_ids(&b, &bob, &room).await;
    assert_eq!(on_a, on_b, "both servers resolved the same state");
    let name_key = ("m.room.name".to_owned(), String::new());
    assert!(on_a.contains_key(&name_key));
}

#[tokio::test]
async fn rooms_of_older_versions_federate_too() {
    let ca = TestCa::new();
    let (a, a_name, b, _, alice, bob) = alice_and_bob(&ca, &[]).await;
    for version in ["10", "11"] {
        let (_, created) = a
            .post(
                "/_matrix/client/v3/createRoom",
                Some(&alice),
                json!({ "preset": "public_chat", "room_version": version }),
            )
            .await;
        let room = created["room_id"].as_str().unwrap().to_owned();
        let (status, joined) = b
            .post(&format!("/_matrix/client/v3/join/{room}?via={a_name}"), Some(&bob), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "v{version}: {joined}");
        let from_a = send_text(&a, &alice, &room, &format!("v{version} from A")).await;
        assert_eq!(
            wait_for_message(&b, &bob, &room, &format!("v{version} from A")).await["event_id"],
            from_a.as_str()
        );
        let from_b = send_text(&b, &bob, &room, &format!("v{version} from B")).await;
        assert_eq!(
            wait_for_message(&a, &alice, &room, &format!("v{version} from B")).await["event_id"],
            from_b.as_str()
        );
    }
}

/// Polls `check` until it holds (what crosses servers arrives in the background); fails naming
/// `what` after 15 s.
pub async fn eventually<F: AsyncFn() -> bool>(what: &str, check: F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The ephemeral events of a joined room in a /sync answer.
pub fn ephemeral(sync: &Value, room: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Syncs as `token` from `since` (`""`: from the start) until `found` picks something out of
/// an answer, which is returned.
pub async fn sync_for(server: &TestServer, token: &str, since: &str, what: &str, found: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut since = since.to_owned();
    loop {
        let path = match since.as_str() {
            "" => "/_matrix/client/v3/sync?timeout=0".to_owned(),
            since => format!("/_matrix/client/v3/sync?timeout=1000&since={since}"),
        };
        let (_, answer) = server.get(&path, Some(token)).await;
        if found(&answer) {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "{what} never arrived: {answer}");
        since = answer["next_batch"].as_str().unwrap_or(&since).to_owned();
    }
}

/// Waits until `user`'s presence status message, as `token` on `server` sees it, is `status`.
pub async fn wait_for_status(server: &TestServer, token: &str, user: &str, status: &str) -> Value {
    let path = format!("/_matrix/client/v3/presence/{user}/status");
    eventually(&format!("{user}'s status {status:?}"), async || {
        server.get(&path, Some(token)).await.1["status_msg"] == status
    })
    .await;
    server.get(&path, Some(token)).await.1
}
