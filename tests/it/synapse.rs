//! Hearth ↔ Synapse: a real Synapse (from PyPI, installed by `scripts/synapse-peer`) and a
//! Hearth federate on loopback over TLS with certificates of a throw-away CA. Each side's user
//! joins the other's room by its alias, messages go both ways with the same event IDs, history
//! from before the join is paged back, and invites work both ways; a Hearth user and a Synapse
//! user chat in an encrypted room with `matrix-sdk` and verify each other; power levels set on
//! Synapse are honoured on Hearth, typing and receipts cross both ways, Synapse's presence
//! reaches Hearth, and Synapse stopped
//! while Hearth writes gets everything, once and in order, after its restart.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::{TestServer, free_port, message_bodies};
use crate::federation::{TestCa, ephemeral, eventually, send_text, sync_for, wait_for_message, wait_for_status};

/// The Synapse version `scripts/synapse-peer` installs.
const SYNAPSE_VERSION: &str = "1.163.2";

/// A running Synapse with its own directory; killed when dropped.
pub struct Synapse {
    child: Option<Child>,
    dir: TempDir,
    pub server: TestServer,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Synapse {
    /// Stops Synapse (as a shutdown would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Synapse again on its data and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = Some(spawn_synapse(self.dir.path()));
        wait_until_up(&self.server.base_url, self.dir.path()).await;
    }
}

/// Runs Synapse with the configuration in `dir`.
fn spawn_synapse(dir: &std::path::Path) -> Child {
    Command::new(python())
        .args([
            "-m",
            "synapse.app.homeserver",
            "-c",
            &dir.join("homeserver.yaml").display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until the server at `base_url` answers `/versions` (Synapse's log in `dir` otherwise).
async fn wait_until_up(base_url: &str, dir: &std::path::Path) {
    let probe = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let versions = format!("{base_url}/_matrix/client/versions");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !probe
        .get(&versions)
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "Synapse did not start: {}",
            std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn python() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let python = PathBuf::from(home).join(format!(".cache/hearth/synapse-{SYNAPSE_VERSION}/bin/python"));
    assert!(
        python.exists(),
        "Synapse is not installed: run scripts/synapse-peer (scripts/test does)"
    );
    python
}

/// Starts Synapse named `127.0.0.1:<port>` with a TLS listener for clients and federation,
/// trusting the test CA and allowed to reach loopback.
pub async fn start_synapse(ca: &TestCa) -> (Synapse, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let name = format!("127.0.0.1:{port}");
    let (certificate, key) = ca.issue(&format!("synapse{port}"));
    let path = |file: &str| dir.path().join(file).display().to_string();
    let config = format!(
        r#"server_name: "{name}"
pid_file: {pid}
listeners:
  - {{ port: {port}, tls: true, type: http, x_forwarded: false, bind_addresses: ["127.0.0.1"], resources: [ {{ names: [client, federation], compress: false }} ] }}
tls_certificate_path: {certificate}
tls_private_key_path: {key}
database: {{ name: sqlite3, args: {{ database: {db} }} }}
log_config: {log_config}
media_store_path: {media}
signing_key_path: {signing}
report_stats: false
macaroon_secret_key: "test-macaroon-secret"
form_secret: "test-form-secret"
enable_registration: true
enable_registration_without_verification: true
trusted_key_servers: []
suppress_key_server_warning: true
federation_custom_ca_list: [{ca}]
federation_verify_certificates: true
ip_range_blacklist: ["10.0.0.0/8"]
ip_range_whitelist: ["127.0.0.0/8"]
rc_joins: {{ local: {{ per_second: 1000, burst_count: 1000 }}, remote: {{ per_second: 1000, burst_count: 1000 }} }}
rc_message: {{ per_second: 1000, burst_count: 1000 }}
rc_room_creation: {{ per_second: 1000, burst_count: 1000 }}
rc_invites: {{ per_room: {{ per_second: 1000, burst_count: 1000 }}, per_user: {{ per_second: 1000, burst_count: 1000 }} }}
"#,
        pid = path("synapse.pid"),
        certificate = certificate.display(),
        key = key.display(),
        db = path("homeserver.db"),
        log_config = path("log.yaml"),
        media = path("media"),
        signing = path("signing.key"),
        ca = ca.certificate.display(),
    );
    std::fs::write(dir.path().join("homeserver.yaml"), config).unwrap();
    let log_config = format!(
        "version: 1\nformatters: {{ plain: {{ format: \"%(asctime)s %(levelname)s %(name)s %(message)s\" }} }}\n\
         handlers: {{ file: {{ class: logging.FileHandler, filename: {}, formatter: plain }} }}\n\
         root: {{ level: WARNING, handlers: [file] }}\ndisable_existing_loggers: false\n",
        path("synapse.log")
    );
    std::fs::write(dir.path().join("log.yaml"), log_config).unwrap();
    let config_path = path("homeserver.yaml");
    let generated = Command::new(python())
        .args(["-m", "synapse.app.homeserver", "-c", &config_path, "--generate-keys"])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let child = spawn_synapse(dir.path());
    let server = TestServer::remote(&format!("https://{name}"));
    wait_until_up(&server.base_url, dir.path()).await;
    (
        Synapse {
            child: Some(child),
            dir,
            server,
        },
        name,
    )
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn room_of(server: &TestServer, token: &str, body: Value) -> String {
    let (status, created) = server.post("/_matrix/client/v3/createRoom", Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["room_id"].as_str().unwrap().to_owned()
}

/// Joins a room by its ID through the server `via`.
async fn join_via(server: &TestServer, token: &str, room: &str, via: &str) {
    let (status, joined) = server
        .post(&format!("/_matrix/client/v3/join/{room}?via={via}"), Some(token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "joining {room}: {joined}");
}

async fn join(server: &TestServer, token: &str, target: &str) {
    let (status, joined) = server
        .post(&format!("/_matrix/client/v3/join/{}", encode(target)), Some(token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "joining {target}: {joined}");
}

#[tokio::test]
async fn hearth_and_synapse_share_rooms_both_ways() {
    let ca = TestCa::new();
    let (synapse, synapse_name) = start_synapse(&ca).await;
    let (hearth, hearth_name) = ca.server(&[]).await;
    let synapse_server = &synapse.server;
    let (sam, _) = synapse_server.register("sam", "sam-password-1").await;
    let (hana, _) = hearth.register("hana", "hana-password-1").await;

    // Hearth's user joins Synapse's room by its alias and reads what came before.
    let synapse_room = room_of(
        synapse_server,
        &sam,
        json!({ "preset": "public_chat", "room_alias_name": "syn", "name": "On Synapse" }),
    )
    .await;
    send_text(synapse_server, &sam, &synapse_room, "before hana came").await;
    join(&hearth, &hana, &format!("#syn:{synapse_name}")).await;
    wait_for_message(&hearth, &hana, &synapse_room, "before hana came").await;
    let from_synapse = send_text(synapse_server, &sam, &synapse_room, "hello from synapse").await;
    assert_eq!(
        wait_for_message(&hearth, &hana, &synapse_room, "hello from synapse").await["event_id"],
        from_synapse.as_str()
    );
    let from_hearth = send_text(&hearth, &hana, &synapse_room, "hello from hearth").await;
    assert_eq!(
        wait_for_message(synapse_server, &sam, &synapse_room, "hello from hearth").await["event_id"],
        from_hearth.as_str()
    );

    // Synapse's user joins Hearth's room by its alias.
    let hearth_room = room_of(
        &hearth,
        &hana,
        json!({ "preset": "public_chat", "room_alias_name": "hea", "name": "On Hearth" }),
    )
    .await;
    send_text(&hearth, &hana, &hearth_room, "before sam came").await;
    join(synapse_server, &sam, &format!("#hea:{hearth_name}")).await;
    wait_for_message(synapse_server, &sam, &hearth_room, "before sam came").await;
    let to_hearth = send_text(synapse_server, &sam, &hearth_room, "sam in hearth's room").await;
    assert_eq!(
        wait_for_message(&hearth, &hana, &hearth_room, "sam in hearth's room").await["event_id"],
        to_hearth.as_str()
    );
    let to_synapse = send_text(&hearth, &hana, &hearth_room, "hana answers").await;
    assert_eq!(
        wait_for_message(synapse_server, &sam, &hearth_room, "hana answers").await["event_id"],
        to_synapse.as_str()
    );

    // Invites both ways: accepted by joining with the room ID alone.
    let private_hearth = room_of(
        &hearth,
        &hana,
        json!({ "preset": "private_chat", "invite": [format!("@sam:{synapse_name}")] }),
    )
    .await;
    let private_synapse = room_of(
        synapse_server,
        &sam,
        json!({ "preset": "private_chat", "invite": [format!("@hana:{hearth_name}")] }),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, sync) = hearth.get("/_matrix/client/v3/sync", Some(&hana)).await;
        if sync["rooms"]["invite"][&private_synapse].is_object() {
            break;
        }
        assert!(Instant::now() < deadline, "Synapse's invite never reached Hearth: {sync}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    join(&hearth, &hana, &private_synapse).await;
    join(synapse_server, &sam, &private_hearth).await;
    send_text(synapse_server, &sam, &private_synapse, "just us").await;
    wait_for_message(&hearth, &hana, &private_synapse, "just us").await;
    send_text(&hearth, &hana, &private_hearth, "just us too").await;
    wait_for_message(synapse_server, &sam, &private_hearth, "just us too").await;

    // Both servers hold the same history of Hearth's room.
    let page = async |server: &TestServer, token: &str| {
        let (_, page) = server
            .get(
                &format!("/_matrix/client/v3/rooms/{hearth_room}/messages?dir=b&limit=10"),
                Some(token),
            )
            .await;
        message_bodies(&page["chunk"])
    };
    assert_eq!(page(&hearth, &hana).await, page(synapse_server, &sam).await);
}

#[tokio::test]
async fn rooms_of_every_version_synapse_creates_are_joined_and_chatted_in() {
    let ca = TestCa::new();
    let (synapse, synapse_name) = start_synapse(&ca).await;
    let (hearth, _) = ca.server(&[]).await;
    let synapse_server = &synapse.server;
    let (sam, _) = synapse_server.register("sam", "sam-password-1").await;
    let (hana, _) = hearth.register("hana", "hana-password-1").await;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"] {
        let room = room_of(synapse_server, &sam, json!({ "preset": "public_chat", "room_version": version })).await;
        join_via(&hearth, &hana, &room, &synapse_name).await;
        let there = send_text(synapse_server, &sam, &room, &format!("v{version} from synapse")).await;
        assert_eq!(
            wait_for_message(&hearth, &hana, &room, &format!("v{version} from synapse")).await["event_id"],
            there.as_str()
        );
        let back = send_text(&hearth, &hana, &room, &format!("v{version} from hearth")).await;
        assert_eq!(
            wait_for_message(synapse_server, &sam, &room, &format!("v{version} from hearth")).await["event_id"],
            back.as_str()
        );
    }
}

#[tokio::test]
async fn encrypted_chat_and_verification_with_a_synapse_user() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new();
    let (synapse, _) = start_synapse(&ca).await;
    let (hearth, _) = ca.server(&[]).await;
    synapse.server.register("sam", "sam-password-1").await;
    hearth.register("hana", "hana-password-1").await;
    crate::federation_e2ee::encrypted_chat_between(&hearth, ("hana", "hana-password-1"), &synapse.server, ("sam", "sam-password-1")).await;
}

#[tokio::test]
async fn synapse_honours_power_levels_typing_receipts_and_catches_up_after_a_restart() {
    let ca = TestCa::new();
    let (mut synapse, synapse_name) = start_synapse(&ca).await;
    let (hearth, hearth_name) = ca.server(&[]).await;
    let (sam, _) = synapse.server.register("sam", "sam-password-1").await;
    let (hana, _) = hearth.register("hana", "hana-password-1").await;
    let (sam_id, hana_id) = (format!("@sam:{synapse_name}"), format!("@hana:{hearth_name}"));
    let room = room_of(&synapse.server, &sam, json!({ "preset": "public_chat", "name": "Sam's" })).await;
    join_via(&hearth, &hana, &room, &synapse_name).await;
    let hello = send_text(&synapse.server, &sam, &room, "hello hana").await;
    wait_for_message(&hearth, &hana, &room, "hello hana").await;

    // Power levels set on Synapse are honoured on Hearth: Hana may rename the room only once
    // Sam promotes her.
    let rename = json!({ "name": "Hana's" });
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/");
    let (status, _) = hearth.put(&path, Some(&hana), rename.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, mut levels) = synapse
        .server
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"), Some(&sam))
        .await;
    levels["users"][&hana_id] = json!(100);
    let (status, _) = synapse
        .server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"),
            Some(&sam),
            levels,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("the promotion reaching Hearth", async || {
        hearth.put(&path, Some(&hana), rename.clone()).await.0 == StatusCode::OK
    })
    .await;
    eventually("the new name reaching Synapse", async || {
        synapse.server.get(&path, Some(&sam)).await.1["name"] == "Hana's"
    })
    .await;

    // Typing and read receipts both ways.
    let (status, _) = hearth
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{hana_id}"),
            Some(&hana),
            json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    sync_for(&synapse.server, &sam, "", "Hana's typing", |answer| {
        ephemeral(answer, &room)
            .iter()
            .any(|e| e["type"] == "m.typing" && e["content"]["user_ids"] == json!([hana_id]))
    })
    .await;
    let (status, _) = synapse
        .server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{sam_id}"),
            Some(&sam),
            json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    sync_for(&hearth, &hana, "", "Sam's typing", |answer| {
        ephemeral(answer, &room)
            .iter()
            .any(|e| e["type"] == "m.typing" && e["content"]["user_ids"] == json!([sam_id]))
    })
    .await;
    let (status, _) = hearth
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{hello}"),
            Some(&hana),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    sync_for(&synapse.server, &sam, "", "Hana's receipt", |answer| {
        ephemeral(answer, &room)
            .iter()
            .any(|e| e["type"] == "m.receipt" && !e["content"][&hello]["m.read"][&hana_id].is_null())
    })
    .await;
    let from_hana = send_text(&hearth, &hana, &room, "read this, sam").await;
    wait_for_message(&synapse.server, &sam, &room, "read this, sam").await;
    let (status, _) = synapse
        .server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{from_hana}"),
            Some(&sam),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    sync_for(&hearth, &hana, "", "Sam's receipt", |answer| {
        ephemeral(answer, &room)
            .iter()
            .any(|e| e["type"] == "m.receipt" && !e["content"][&from_hana]["m.read"][&sam_id].is_null())
    })
    .await;

    // Sam's presence and status reach Hearth (Synapse leaves out fields ruma's type wants).
    let (status, _) = synapse
        .server
        .put(
            &format!("/_matrix/client/v3/presence/{sam_id}/status"),
            Some(&sam),
            json!({ "presence": "online", "status_msg": "on synapse" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_status(&hearth, &hana, &sam_id, "on synapse").await;

    // Synapse is down while Hana keeps writing: after its restart everything arrives, once,
    // in order.
    synapse.stop();
    let sent: Vec<String> = (0..5).map(|n| format!("while synapse was down {n}")).collect();
    for body in &sent {
        send_text(&hearth, &hana, &room, body).await;
    }
    synapse.restart().await;
    hearth.admin(&["federation", "retry", &synapse_name]);
    wait_for_message(&synapse.server, &sam, &room, &sent[4]).await;
    let (_, page) = synapse
        .server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"), Some(&sam))
        .await;
    let mut bodies = message_bodies(&page["chunk"]);
    bodies.reverse();
    let arrived: Vec<String> = bodies
        .into_iter()
        .filter(|body| body.starts_with("while synapse was down"))
        .collect();
    assert_eq!(arrived, sent);
}
