//! `/voip/turnServer`: coturn REST credentials from the shared secret, or nothing.

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestServer;

#[tokio::test]
async fn turn_credentials_from_the_shared_secret() {
    let plain = TestServer::start(&[]).await;
    let (token, _) = plain.register("alice", "password").await;
    let (status, answer) = plain.get("/_matrix/client/v3/voip/turnServer", Some(&token)).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({})));

    let uris = r#"["turn:turn.example.org:3478?transport=udp","turns:turn.example.org:5349?transport=tcp"]"#;
    let server = TestServer::start(&[
        ("HEARTH_TURN__URIS", uris),
        ("HEARTH_TURN__SHARED_SECRET", "coturn secret"),
        ("HEARTH_TURN__TTL", "1h"),
    ])
    .await;
    let (token, _) = server.register("alice", "password").await;
    let (status, answer) = server.get("/_matrix/client/v3/voip/turnServer", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ttl"], 3600);
    assert_eq!(answer["uris"][1], "turns:turn.example.org:5349?transport=tcp");
    let username = answer["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "@alice:localhost");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 3590..=now + 3610).contains(&expiry.parse::<u64>().unwrap()), "{username}");
    // What coturn computes from its static-auth-secret.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"coturn secret").unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(answer["password"], expected);
    assert_eq!(
        server.get("/_matrix/client/v3/voip/turnServer", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // URIs without the secret stop start-up, naming the key.
    let output = server
        .command()
        .env_remove("HEARTH_TURN__SHARED_SECRET")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("turn.shared_secret"), "{stderr}");
}
