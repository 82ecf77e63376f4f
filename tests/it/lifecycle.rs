//! Running the binary: configuration layering and errors, clean shutdown on SIGTERM, and data
//! that survives a restart, a SIGKILL, and a WAL whose tail a power cut tore.

use std::process::Command;

use serde_json::json;

use crate::common::{TestServer, assert_error, message_bodies, postgres_cluster};

fn hearth() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    command.env_clear();
    command
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("HEARTH_LISTEN", "not-an-address")], "`listen`"),
        (&[("HEARTH_REGISTRATION", "sometimes")], "`registration`"),
        (&[("HEARTH_SERVER_NAME", "bad server name!")], "`server_name`"),
        (&[("HEARTH_RATE_LIMITS__LOGIN__BURST", "0")], "`rate_limits.login`"),
        (&[("HEARTH_STORAGE__BACKEND", "postgres")], "`storage.postgres_url`"),
    ];
    for (env, key) in cases {
        let output = hearth()
            .arg("serve")
            .env("HEARTH_DATA_DIR", &data)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{env:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    // A file's bad value and an unknown key are named too; a missing file is reported.
    let file = dir.path().join("hearth.toml");
    std::fs::write(&file, "listen = 8008\n").unwrap();
    let output = hearth().args(["serve", "--config"]).arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("`listen`"));
    std::fs::write(&file, "[storage]\nsync_writez = true\n").unwrap();
    let output = hearth().args(["serve", "--config"]).arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("sync_writez"), "{output:?}");
    let output = hearth().args(["serve", "--config", "/nonexistent/hearth.toml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
}

#[tokio::test]
async fn config_file_is_layered_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hearth.toml");
    std::fs::write(&file, "registration = \"closed\"\n[well_known]\nserver = \"file.example:443\"\n").unwrap();
    // The file sets the delegation; the environment (the harness's HEARTH_REGISTRATION=open)
    // wins over the file's `closed`.
    let server = TestServer::start(&[("HEARTH_CONFIG", file.to_str().unwrap())]).await;
    assert_eq!(
        server.get("/.well-known/matrix/server", None).await.1["m.server"],
        "file.example:443"
    );
    server.register("mona", "pw").await;
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_everything_persists() {
    let mut server = TestServer::start(&[]).await;
    let (token, _) = server.register("lena", "lena-pw").await;
    let displayname = "/_matrix/client/v3/profile/@lena:localhost/displayname";
    assert_eq!(
        server
            .put(displayname, Some(&token), json!({ "displayname": "Lena" }))
            .await
            .0
            .as_u16(),
        200
    );
    let (_, keys) = server.get("/_matrix/key/v2/server", None).await;

    assert_eq!(server.stop(), Some(0));
    assert!(server.log().contains("stopped cleanly"), "{}", server.log());
    server.restart().await;

    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_eq!((status.as_u16(), whoami["user_id"].as_str()), (200, Some("@lena:localhost")));
    assert_eq!(server.get(displayname, None).await.1["displayname"], "Lena");
    assert_eq!(server.login("lena", "lena-pw").await.0.as_u16(), 200);
    let (_, keys_after) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(keys["verify_keys"], keys_after["verify_keys"], "the signing key is kept");
}

#[tokio::test]
async fn every_acknowledged_write_survives_sigkill() {
    let mut server = TestServer::start(&[]).await;
    let mut accounts = Vec::new();
    for i in 0..20 {
        let name = format!("user{i}");
        let (token, _) = server.register(&name, "pw").await;
        let path = format!("/_matrix/client/v3/user/@{name}:localhost/account_data/im.hearth.n");
        assert_eq!(server.put(&path, Some(&token), json!({ "n": i })).await.0.as_u16(), 200);
        accounts.push((name, token, path));
    }
    // The last write was acknowledged just now; crash before any flush.
    server.crash_and_restart().await;
    for (i, (name, token, path)) in accounts.iter().enumerate() {
        let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
        assert_eq!(
            (status.as_u16(), whoami["user_id"].as_str()),
            (200, Some(format!("@{name}:localhost").as_str()))
        );
        assert_eq!(server.get(path, Some(token)).await.1, json!({ "n": i }));
    }
    // Unknown tokens are still unknown.
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some("hth_x_y")).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn a_torn_wal_tail_loses_nothing_acknowledged_before_the_tear() {
    if postgres_cluster().is_some() {
        return; // RocksDB's WAL; PostgreSQL's is PostgreSQL's to recover.
    }
    let mut server = TestServer::start(&[("HEARTH_STORAGE__SYNC_WRITES", "true")]).await;
    let (token, _) = server.register("writer", "pw").await;
    let room = server.create_room(&token, json!({})).await;
    // Concurrent senders: their acknowledgements wait on shared fsyncs.
    let sends = (0..30).map(|i| {
        let (server, token, room) = (&server, &token, &room);
        async move {
            server
                .send(
                    token,
                    room,
                    "m.room.message",
                    json!({ "msgtype": "m.text", "body": format!("m{i:02}") }),
                )
                .await
        }
    });
    futures_util::future::join_all(sends).await;
    server.kill();

    // The newest WAL file loses its last bytes, as a write cut off by a power failure would.
    let wal = std::fs::read_dir(server.dir.path().join("data/db"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .max()
        .expect("a WAL file");
    let length = std::fs::metadata(&wal).unwrap().len();
    assert!(length > 16, "the WAL holds the writes");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(length - 7)
        .unwrap();

    // The server starts by itself; of the 30 acknowledged messages only the torn last write
    // may be gone, and it takes new writes.
    server.spawn().await;
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100");
    let (status, page) = server.get(&path, Some(&token)).await;
    assert_eq!(status.as_u16(), 200, "{page}");
    let mut bodies = message_bodies(&page["chunk"]);
    bodies.sort();
    let expected: Vec<String> = (0..30).map(|i| format!("m{i:02}")).collect();
    assert!(bodies.len() >= 29, "more than the torn write was lost: {bodies:?}");
    assert!(bodies.iter().all(|body| expected.contains(body)), "{bodies:?}");
    server
        .send(&token, &room, "m.room.message", json!({ "msgtype": "m.text", "body": "after" }))
        .await;
    let (_, page) = server.get(&path, Some(&token)).await;
    assert_eq!(message_bodies(&page["chunk"]).first().map(String::as_str), Some("after"));
}

#[tokio::test]
async fn health_endpoints_answer_for_probes() {
    let server = TestServer::start(&[]).await;
    let (status, live) = server.get("/_hearth/health/live", None).await;
    assert_eq!((status.as_u16(), live["status"].as_str()), (200, Some("live")));
    let (status, ready) = server.get("/_hearth/health/ready", None).await;
    assert_eq!((status.as_u16(), ready["status"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn serves_https_with_its_own_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");

    let server = TestServer::start(&[
        ("HEARTH_TLS__CERTIFICATE", cert.to_str().unwrap()),
        ("HEARTH_TLS__KEY", key.to_str().unwrap()),
    ])
    .await;
    assert!(server.base_url.starts_with("https://"));
    let (status, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status.as_u16(), 200);
    assert!(versions["versions"].as_array().unwrap().iter().any(|v| v == "v1.11"));
    let (token, _) = server.register("alice", "alicepass").await;
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(&token)).await.0.as_u16(), 200);

    // Plain HTTP on the TLS port gets nowhere.
    let plain = reqwest::Client::new()
        .get(server.base_url.replace("https://", "http://") + "/_matrix/client/versions")
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}
