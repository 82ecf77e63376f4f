//! End-to-end encryption: `matrix-sdk` clients with encryption on chat in an encrypted room,
//! bootstrap cross-signing, verify a second device by emoji (SAS) and each other's identities,
//! and restore history keys from the server-side backup on a fresh login; plain HTTP checks
//! the key endpoints' exact answers and the device lists in /sync.

use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error};
use crate::sdk::{client, user};

/// One sync of each client, in order (each uploads its keys and handles to-device messages).
pub async fn sync(clients: &[&Client]) {
    for client in clients {
        client
            .sync_once(SyncSettings::default().timeout(std::time::Duration::ZERO))
            .await
            .expect("sync");
    }
}

/// The room's messages as this client reads them, oldest first: the plaintext body, or
/// `<encrypted>` when it cannot decrypt.
pub async fn readable_messages(client: &Client, room_id: &RoomId) -> Vec<String> {
    let Some(room) = client.get_room(room_id) else { return Vec::new() };
    let messages = room.messages(MessagesOptions::backward()).await.expect("history");
    let mut bodies = Vec::new();
    for event in messages.chunk.iter().rev() {
        let event: Value = serde_json::from_str(event.raw().json().get()).unwrap();
        match event["type"].as_str() {
            Some("m.room.message") => bodies.push(event["content"]["body"].as_str().unwrap().to_owned()),
            Some("m.room.encrypted") => bodies.push("<encrypted>".to_owned()),
            _ => {}
        }
    }
    bodies
}

/// Alice creates an encrypted room with Bob in it.
async fn encrypted_room(alice: &Client, bob: &Client) -> OwnedRoomId {
    let mut request = CreateRoomRequest::new();
    request.invite = vec![bob.user_id().unwrap().to_owned()];
    let encryption = json!({ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } });
    request.initial_state = vec![Raw::from_json(serde_json::value::to_raw_value(&encryption).unwrap())];
    let room_id = alice.create_room(request).await.expect("room created").room_id().to_owned();
    sync(&[bob]).await;
    bob.join_room_by_id(&room_id).await.expect("bob joins");
    sync(&[alice, bob]).await;
    room_id
}

pub async fn send(client: &Client, room_id: &RoomId, body: &str) {
    let room = client.get_room(room_id).expect("room known");
    room.send(RoomMessageEventContent::text_plain(body)).await.expect("sent");
}

#[tokio::test]
async fn matrix_sdk_encrypted_chat_cross_signing_verification_and_backup() {
    let server = TestServer::start(&[]).await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    sync(&[&alice, &bob]).await;
    let alice_id = alice.user_id().unwrap().to_owned();
    let bob_id = bob.user_id().unwrap().to_owned();

    // Each side decrypts the other's messages; the server holds only ciphertext.
    let room_id = encrypted_room(&alice, &bob).await;
    send(&alice, &room_id, "Hello Bob, this is secret").await;
    sync(&[&bob]).await;
    send(&bob, &room_id, "Secret received, Alice").await;
    sync(&[&alice, &bob]).await;
    let conversation = ["Hello Bob, this is secret", "Secret received, Alice"];
    assert_eq!(readable_messages(&bob, &room_id).await, conversation);
    assert_eq!(readable_messages(&alice, &room_id).await, conversation);
    let token = alice.access_token().unwrap();
    let (_, stored) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"), Some(&token))
        .await;
    let kinds: Vec<&str> = stored["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(!kinds.contains(&"m.room.message"), "plaintext on the server: {kinds:?}");
    assert_eq!(kinds.iter().filter(|kind| **kind == "m.room.encrypted").count(), 2);

    // Alice's second device appears in Bob's device list and receives what Bob sends next.
    let phone = client(&server).await;
    phone.matrix_auth().login_username("alice", "correct horse").send().await.unwrap();
    sync(&[&phone, &alice, &bob]).await;
    let phone_id = phone.device_id().unwrap().to_owned();
    assert!(
        bob.encryption().get_device(&alice_id, &phone_id).await.unwrap().is_some(),
        "bob sees alice's new device"
    );
    send(&bob, &room_id, "Welcome to the phone").await;
    sync(&[&phone]).await;
    assert_eq!(
        readable_messages(&phone, &room_id).await.last().map(String::as_str),
        Some("Welcome to the phone")
    );

    // Cross-signing: the first keys need no password.
    alice
        .encryption()
        .bootstrap_cross_signing(None)
        .await
        .expect("alice bootstraps cross-signing");
    bob.encryption()
        .bootstrap_cross_signing(None)
        .await
        .expect("bob bootstraps cross-signing");
    sync(&[&alice, &phone, &bob]).await;

    // The phone verifies itself against Alice's first device by emoji.
    let first_device = phone
        .encryption()
        .get_device(&alice_id, alice.device_id().unwrap())
        .await
        .unwrap()
        .expect("the phone knows the first device");
    let request = first_device.request_verification().await.expect("verification requested");
    sync(&[&alice]).await;
    let incoming = alice
        .encryption()
        .get_verification_request(&alice_id, request.flow_id())
        .await
        .expect("the request arrives as a to-device message");
    incoming.accept().await.unwrap();
    sync(&[&phone]).await;
    assert!(request.is_ready(), "the phone sees the request accepted");
    let phone_sas = request.start_sas().await.unwrap().expect("SAS starts");
    sync(&[&alice]).await;
    let alice_sas = alice
        .encryption()
        .get_verification(&alice_id, request.flow_id())
        .await
        .and_then(|verification| verification.sas())
        .expect("the SAS start arrives");
    alice_sas.accept().await.unwrap();
    for _ in 0..5 {
        sync(&[&phone, &alice]).await;
        if phone_sas.can_be_presented() && alice_sas.can_be_presented() {
            break;
        }
    }
    let emoji =
        |sas: &matrix_sdk::encryption::verification::SasVerification| sas.emoji().expect("emoji shown").map(|emoji| emoji.symbol).to_vec();
    assert_eq!(emoji(&phone_sas), emoji(&alice_sas), "both devices show the same emoji");
    phone_sas.confirm().await.unwrap();
    alice_sas.confirm().await.unwrap();
    for _ in 0..5 {
        sync(&[&phone, &alice]).await;
        if phone_sas.is_done() && alice_sas.is_done() {
            break;
        }
    }
    assert!(
        phone_sas.is_done() && alice_sas.is_done(),
        "the verification completes on both devices"
    );

    // The first device signed the phone with the self-signing key: Bob sees it cross-signed.
    sync(&[&alice, &bob]).await;
    let phone_for_bob = bob.encryption().get_device(&alice_id, &phone_id).await.unwrap().unwrap();
    assert!(phone_for_bob.is_cross_signed_by_owner(), "the phone is cross-signed by alice");

    // Alice and Bob verify each other: signatures of their user-signing keys.
    let alice_for_bob = bob
        .encryption()
        .request_user_identity(&alice_id)
        .await
        .unwrap()
        .expect("alice's identity");
    alice_for_bob.verify().await.expect("bob verifies alice");
    let bob_for_alice = alice
        .encryption()
        .request_user_identity(&bob_id)
        .await
        .unwrap()
        .expect("bob's identity");
    bob_for_alice.verify().await.expect("alice verifies bob");
    sync(&[&alice, &bob]).await;
    let refetched = bob.encryption().request_user_identity(&alice_id).await.unwrap().unwrap();
    assert!(refetched.is_verified(), "the server keeps bob's signature of alice's master key");
    let refetched = alice.encryption().request_user_identity(&bob_id).await.unwrap().unwrap();
    assert!(refetched.is_verified(), "the server keeps alice's signature of bob's master key");

    // Key backup: Alice turns recovery on; a fresh login restores the history keys with the
    // recovery key.
    let recovery_key = alice
        .encryption()
        .recovery()
        .enable()
        .wait_for_backups_to_upload()
        .await
        .expect("recovery enabled and keys backed up");
    let laptop = client(&server).await;
    laptop.matrix_auth().login_username("alice", "correct horse").send().await.unwrap();
    sync(&[&laptop]).await;
    assert!(readable_messages(&laptop, &room_id).await.iter().all(|body| body == "<encrypted>"));
    laptop
        .encryption()
        .recovery()
        .recover(&recovery_key)
        .await
        .expect("recovery with the key");
    laptop
        .encryption()
        .backups()
        .download_room_keys_for_room(&room_id)
        .await
        .expect("room keys downloaded");
    assert_eq!(
        readable_messages(&laptop, &room_id).await,
        ["Hello Bob, this is secret", "Secret received, Alice", "Welcome to the phone"]
    );
}

/// The uploaded device keys of a made-up device (the server checks who they claim to be, not
/// the keys themselves).
fn device_keys(user: &str, device: &str) -> Value {
    json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": { format!("curve25519:{device}"): "curve", format!("ed25519:{device}"): "ed" },
        "signatures": {}
    })
}

#[tokio::test]
async fn key_upload_claim_with_fallback_and_counts_in_sync() {
    let server = TestServer::start(&[]).await;
    let (alice, alice_device) = server.register("alice", "pw").await;
    let (bob, _) = server.register("bob", "pw").await;

    // Device keys must be the uploader's own.
    let wrong = server
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "device_keys": device_keys("@bob:localhost", &alice_device) }),
        )
        .await;
    assert_error(&wrong, 400, "M_INVALID_PARAM");

    let upload = json!({
        "device_keys": device_keys("@alice:localhost", &alice_device),
        "one_time_keys": {
            "signed_curve25519:AAAAAQ": { "key": "one", "signatures": {} },
            "signed_curve25519:AAAAAg": { "key": "two", "signatures": {} }
        },
        "fallback_keys": { "signed_curve25519:AAAAAw": { "key": "fallback", "fallback": true, "signatures": {} } }
    });
    let (status, body) = server.post("/_matrix/client/v3/keys/upload", Some(&alice), upload.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["one_time_key_counts"]["signed_curve25519"], 2);
    // Uploading the same keys again is a no-op; the same key ID with another key is refused.
    let (_, again) = server.post("/_matrix/client/v3/keys/upload", Some(&alice), upload).await;
    assert_eq!(again["one_time_key_counts"]["signed_curve25519"], 2);
    let conflict = server
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "one_time_keys": { "signed_curve25519:AAAAAQ": { "key": "other", "signatures": {} } } }),
        )
        .await;
    assert_error(&conflict, 400, "M_UNKNOWN");

    // Sync tells the device its key stock.
    let (_, synced) = server.get("/_matrix/client/v3/sync", Some(&alice)).await;
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 2);
    assert_eq!(synced["device_unused_fallback_key_types"], json!(["signed_curve25519"]));

    // Bob queries and claims: two one-time keys, each once, then the fallback key.
    let (_, query) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&bob),
            json!({ "device_keys": { "@alice:localhost": [] } }),
        )
        .await;
    let keys = &query["device_keys"]["@alice:localhost"][&alice_device];
    assert_eq!(keys["keys"][format!("ed25519:{alice_device}")], "ed");
    let claim = json!({ "one_time_keys": { "@alice:localhost": { &alice_device: "signed_curve25519" } } });
    let mut claimed = Vec::new();
    for _ in 0..4 {
        let (status, body) = server.post("/_matrix/client/v3/keys/claim", Some(&bob), claim.clone()).await;
        assert_eq!(status, 200, "{body}");
        let keys = body["one_time_keys"]["@alice:localhost"][&alice_device]
            .as_object()
            .unwrap()
            .clone();
        claimed.push(keys.values().next().unwrap()["key"].as_str().unwrap().to_owned());
    }
    assert_eq!(claimed, ["one", "two", "fallback", "fallback"]);
    let (_, synced) = server.get("/_matrix/client/v3/sync", Some(&alice)).await;
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(synced["device_unused_fallback_key_types"], json!([]), "the fallback key was used");

    // Users of other servers are failures, not errors.
    let (status, remote) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&bob),
            json!({ "device_keys": { "@carol:elsewhere.example": [] } }),
        )
        .await;
    assert_eq!(status, 200);
    assert!(remote["failures"]["elsewhere.example"].is_object(), "{remote}");
}

#[tokio::test]
async fn device_lists_follow_keys_deletions_and_memberships() {
    let server = TestServer::start(&[]).await;
    let (alice, alice_device) = server.register("alice", "pw").await;
    let (bob, _) = server.register("bob", "pw").await;
    let (carol, carol_device) = server.register("carol", "pw").await;
    let (_, room) = server
        .post("/_matrix/client/v3/createRoom", Some(&alice), json!({ "preset": "public_chat" }))
        .await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();
    let (_, first) = server.get("/_matrix/client/v3/sync", Some(&bob)).await;
    let mut since = first["next_batch"].as_str().unwrap().to_owned();
    let next_sync = |since: String| {
        let server = &server;
        let bob = bob.clone();
        async move {
            let (_, body) = server
                .get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0"), Some(&bob))
                .await;
            body
        }
    };

    // Bob joins: everyone in the room is new to him.
    server
        .post(&format!("/_matrix/client/v3/join/{room_id}"), Some(&bob), json!({}))
        .await;
    let body = next_sync(since).await;
    assert_eq!(body["device_lists"]["changed"], json!(["@alice:localhost"]), "{body}");
    since = body["next_batch"].as_str().unwrap().to_owned();

    // Alice uploads keys; Carol, who shares no room with Bob, does too (he must not hear of it).
    for (token, user, device) in [
        (&alice, "@alice:localhost", &alice_device),
        (&carol, "@carol:localhost", &carol_device),
    ] {
        let (status, body) = server
            .post(
                "/_matrix/client/v3/keys/upload",
                Some(token),
                json!({ "device_keys": device_keys(user, device) }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let body = next_sync(since.clone()).await;
    assert_eq!(body["device_lists"]["changed"], json!(["@alice:localhost"]), "{body}");
    let (_, changes) = server
        .get(
            &format!(
                "/_matrix/client/v3/keys/changes?from={since}&to={}",
                body["next_batch"].as_str().unwrap()
            ),
            Some(&bob),
        )
        .await;
    assert_eq!(changes["changed"], json!(["@alice:localhost"]), "{changes}");
    since = body["next_batch"].as_str().unwrap().to_owned();

    // A long-polling sync wakes when Alice deletes a device.
    let (_, second_login) = server.login("alice", "pw").await;
    let second_device = second_login["device_id"].as_str().unwrap().to_owned();
    let body = next_sync(since).await;
    since = body["next_batch"].as_str().unwrap().to_owned();
    let poll = {
        let url = format!("{}/_matrix/client/v3/sync?since={since}&timeout=10000", server.base_url);
        let bob = bob.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let body: Value = reqwest::Client::new()
                .get(url)
                .bearer_auth(bob)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let auth = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw" } });
    let (status, body) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/_matrix/client/v3/devices/{second_device}"),
            Some(&alice),
            Some(auth),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (body, waited) = poll.await.unwrap();
    assert_eq!(body["device_lists"]["changed"], json!(["@alice:localhost"]), "{body}");
    assert!(waited < std::time::Duration::from_secs(5), "woken by the deletion, not the timeout");
    since = body["next_batch"].as_str().unwrap().to_owned();

    // Alice leaves the only room they share: Bob hears she left.
    server
        .post(&format!("/_matrix/client/v3/rooms/{room_id}/leave"), Some(&alice), json!({}))
        .await;
    let body = next_sync(since).await;
    assert_eq!(body["device_lists"]["left"], json!(["@alice:localhost"]), "{body}");
    assert!(
        body["device_lists"]["changed"].as_array().is_none_or(|changed| changed.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn cross_signing_replacement_needs_the_password_and_signatures_are_checked() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "pw").await;
    // A master key whose signature over a self-signing key cannot verify.
    let master = json!({ "user_id": "@alice:localhost", "usage": ["master"], "keys": { "ed25519:bWFzdGVy": "bWFzdGVy" } });
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "master_key": master }),
        )
        .await;
    assert_eq!(status, 200, "the first keys need no password: {body}");
    let (_, query) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&alice),
            json!({ "device_keys": { "@alice:localhost": [] } }),
        )
        .await;
    assert_eq!(query["master_keys"]["@alice:localhost"]["keys"]["ed25519:bWFzdGVy"], "bWFzdGVy");

    // The same keys again: no password. Other keys: UIA with the password.
    let (status, _) = server
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "master_key": master }),
        )
        .await;
    assert_eq!(status, 200);
    let other = json!({ "user_id": "@alice:localhost", "usage": ["master"], "keys": { "ed25519:b3RoZXI": "b3RoZXI" } });
    let (status, challenge) = server
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "master_key": other }),
        )
        .await;
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(challenge["flows"][0]["stages"], json!(["m.login.password"]));
    let auth = json!({
        "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw",
        "session": challenge["session"]
    });
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "master_key": other, "auth": auth }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A self-signing key the master key did not sign is refused; so is a forged signature.
    let self_signing = json!({ "user_id": "@alice:localhost", "usage": ["self_signing"], "keys": { "ed25519:c2VsZg": "c2VsZg" } });
    let refused = server
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "self_signing_key": self_signing }),
        )
        .await;
    assert_error(&refused, 400, "M_INVALID_PARAM");
    let forged = json!({ "@alice:localhost": { "b3RoZXI": {
        "user_id": "@alice:localhost", "usage": ["master"], "keys": { "ed25519:b3RoZXI": "b3RoZXI" },
        "signatures": { "@alice:localhost": { "ed25519:NOSUCHDEVICE": "Zm9yZ2Vk" } }
    } } });
    let (status, body) = server.post("/_matrix/client/v3/keys/signatures/upload", Some(&alice), forged).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["failures"]["@alice:localhost"]["b3RoZXI"]["errcode"], "M_INVALID_SIGNATURE",
        "{body}"
    );
}

#[tokio::test]
async fn room_key_backup_versions_and_keys() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "pw").await;
    let missing = server.get("/_matrix/client/v3/room_keys/version", Some(&alice)).await;
    assert_error(&missing, 404, "M_NOT_FOUND");
    let algorithm =
        json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "cHVibGlj", "signatures": {} } });
    let (_, created) = server
        .post("/_matrix/client/v3/room_keys/version", Some(&alice), algorithm.clone())
        .await;
    assert_eq!(created["version"], "1");

    let session = |index: u64, verified: bool, ciphertext: &str| {
        json!({ "first_message_index": index, "forwarded_count": 0, "is_verified": verified,
                "session_data": { "ephemeral": "ZXBo", "ciphertext": ciphertext, "mac": "bWFj" } })
    };
    let room = "!room:localhost";
    let (status, put) = server
        .put(
            &format!("/_matrix/client/v3/room_keys/keys/{room}/session1?version=1"),
            Some(&alice),
            session(5, false, "Zmlyc3Q"),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["count"], 1);
    let first_etag = put["etag"].as_str().unwrap().to_owned();
    // A worse copy (later first index) is not kept; a better one (verified) is.
    let (_, worse) = server
        .put(
            &format!("/_matrix/client/v3/room_keys/keys/{room}/session1?version=1"),
            Some(&alice),
            session(9, false, "d29yc2U"),
        )
        .await;
    assert_eq!(worse["etag"], first_etag.as_str());
    let body = json!({ "rooms": { room: { "sessions": { "session1": session(7, true, "YmV0dGVy"), "session2": session(0, false, "c2Vjb25k") } } } });
    let (_, better) = server.put("/_matrix/client/v3/room_keys/keys?version=1", Some(&alice), body).await;
    assert_eq!(better["count"], 2);
    assert_ne!(better["etag"], first_etag.as_str());
    let (_, all) = server.get("/_matrix/client/v3/room_keys/keys?version=1", Some(&alice)).await;
    assert_eq!(all["rooms"][room]["sessions"]["session1"]["session_data"]["ciphertext"], "YmV0dGVy");
    let (_, latest) = server.get("/_matrix/client/v3/room_keys/version", Some(&alice)).await;
    assert_eq!((latest["version"].clone(), latest["count"].clone()), (json!("1"), json!(2)));
    assert_eq!(latest["auth_data"]["public_key"], "cHVibGlj");

    // A new version becomes current; the old one takes no keys.
    let (_, second) = server.post("/_matrix/client/v3/room_keys/version", Some(&alice), algorithm).await;
    assert_eq!(second["version"], "2");
    let stale = server
        .put(
            &format!("/_matrix/client/v3/room_keys/keys/{room}/session3?version=1"),
            Some(&alice),
            session(0, false, "eA"),
        )
        .await;
    assert_error(&stale, 403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(stale.1["current_version"], "2");

    // Deleting keys and versions.
    let (_, deleted) = server
        .request(
            reqwest::Method::DELETE,
            &format!("/_matrix/client/v3/room_keys/keys/{room}/session2?version=1"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(deleted["count"], 1);
    let gone = server
        .get(
            &format!("/_matrix/client/v3/room_keys/keys/{room}/session2?version=1"),
            Some(&alice),
        )
        .await;
    assert_error(&gone, 404, "M_NOT_FOUND");
    let (status, _) = server
        .request(
            reqwest::Method::DELETE,
            "/_matrix/client/v3/room_keys/version/1",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let unknown = server.get("/_matrix/client/v3/room_keys/version/1", Some(&alice)).await;
    assert_error(&unknown, 404, "M_NOT_FOUND");
}
