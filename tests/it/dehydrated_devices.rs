//! Dehydrated devices (MSC3814): a device kept on the server with its keys, which receives
//! to-device messages while none of the user's clients runs, read back by a new client.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error};

const BASE: &str = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";

fn dehydrated(device_id: &str) -> Value {
    json!({
        "device_id": device_id,
        "initial_device_display_name": "Dehydrated device",
        "device_data": { "algorithm": "org.matrix.msc3814.v1.olm", "device_pickle": "encrypted-pickle", "nonce": "nonce" },
        "device_keys": {
            "user_id": "@alice:localhost", "device_id": device_id, "dehydrated": true,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": { format!("curve25519:{device_id}"): "curve", format!("ed25519:{device_id}"): "ed" },
            "signatures": { "@alice:localhost": { format!("ed25519:{device_id}"): "sig" } },
        },
        "one_time_keys": { "signed_curve25519:AAAAAQ": { "key": "otk", "signatures": { "@alice:localhost": { format!("ed25519:{device_id}"): "sig" } } } },
    })
}

#[tokio::test]
async fn a_dehydrated_device_receives_to_device_messages_for_the_next_client() {
    let server = TestServer::start(&[]).await;
    let (alice, alice_device) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(versions["unstable_features"]["org.matrix.msc3814"], true, "how Element finds it");
    assert_error(&server.get(BASE, Some(&alice)).await, 404, "M_NOT_FOUND");
    assert_error(
        &server.put(BASE, Some(&alice), dehydrated(&alice_device)).await,
        400,
        "M_INVALID_PARAM",
    );

    let (status, put) = server.put(BASE, Some(&alice), dehydrated("DEHYDRATED1")).await;
    assert_eq!((status, put), (StatusCode::OK, json!({ "device_id": "DEHYDRATED1" })));
    let (_, got) = server.get(BASE, Some(&alice)).await;
    assert_eq!(got["device_id"], "DEHYDRATED1");
    assert_eq!(got["device_data"]["device_pickle"], "encrypted-pickle");

    // Others see its keys and claim its one-time key, and send it to-device messages.
    let (_, keys) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&bob),
            json!({ "device_keys": { "@alice:localhost": [] } }),
        )
        .await;
    assert_eq!(keys["device_keys"]["@alice:localhost"]["DEHYDRATED1"]["dehydrated"], true, "{keys}");
    let (_, claimed) = server
        .post(
            "/_matrix/client/v3/keys/claim",
            Some(&bob),
            json!({ "one_time_keys": { "@alice:localhost": { "DEHYDRATED1": "signed_curve25519" } } }),
        )
        .await;
    assert!(
        claimed["one_time_keys"]["@alice:localhost"]["DEHYDRATED1"]["signed_curve25519:AAAAAQ"].is_object(),
        "{claimed}"
    );
    for txn in ["k1", "k2"] {
        let (status, _) = server
            .put(
                &format!("/_matrix/client/v3/sendToDevice/m.room.encrypted/{txn}"),
                Some(&bob),
                json!({ "messages": { "@alice:localhost": { "DEHYDRATED1": { "ciphertext": txn } } } }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    // A new client reads them, then acknowledges them.
    let events = format!("{BASE}/DEHYDRATED1/events");
    let (status, first) = server.post(&events, Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let ciphertexts: Vec<&str> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["ciphertext"].as_str().unwrap())
        .collect();
    assert_eq!(ciphertexts, ["k1", "k2"]);
    assert_eq!(first["events"][0]["sender"], "@bob:localhost");
    let (_, rest) = server
        .post(&events, Some(&alice), json!({ "next_batch": first["next_batch"] }))
        .await;
    assert_eq!(rest["events"], json!([]));
    assert_error(
        &server.post(&format!("{BASE}/{alice_device}/events"), Some(&alice), json!({})).await,
        403,
        "M_FORBIDDEN",
    );

    // A new dehydrated device replaces the old one; deleting it leaves none.
    server.put(BASE, Some(&alice), dehydrated("DEHYDRATED2")).await;
    assert_eq!(server.get(BASE, Some(&alice)).await.1["device_id"], "DEHYDRATED2");
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(&alice)).await;
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"DEHYDRATED1") && ids.contains(&"DEHYDRATED2"), "{ids:?}");
    let (status, deleted) = server.request(reqwest::Method::DELETE, BASE, Some(&alice), None).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({ "device_id": "DEHYDRATED2" })));
    assert_error(&server.get(BASE, Some(&alice)).await, 404, "M_NOT_FOUND");
}
