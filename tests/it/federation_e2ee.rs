//! What clients show across servers, between two TLS Hearths: `matrix-sdk` clients with
//! encryption decrypt each other's messages in an encrypted room (keys queried and claimed over
//! federation, room keys sent as to-device EDUs), a new device of the remote user appears and
//! decrypts the next message; a remote user found in the user directory under the name their
//! profile change gave their member event; typing, read receipts and presence shown on the
//! other side;
//! to-device messages sent while the receiving server was down arrive once after its restart;
//! an image of one server downloaded (and thumbnailed) on the other, fetched once; and OpenID
//! tokens checked with the server that issued them; remote device lists cached, kept current by
//! updates that follow each other, and answered from while the other server is down.

use std::time::{Duration, Instant};

use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error};
use crate::e2ee::{readable_messages, send, sync};
use crate::federation::{TestCa, alice_and_bob, ephemeral, eventually, send_text, sync_for, wait_for_message, wait_for_status};
use crate::media::{decoded_size, fetch, png, upload};

/// A `matrix-sdk` client with encryption, logged in on a TLS test server.
async fn login(server: &TestServer, name: &str, password: &str) -> Client {
    let client = Client::builder()
        .homeserver_url(&server.base_url)
        .disable_ssl_verification()
        .build()
        .await
        .expect("client builds");
    client.matrix_auth().login_username(name, password).send().await.expect("login");
    client
}

/// Syncs the clients until `done` holds (events cross servers in the background).
async fn sync_until<F: AsyncFn() -> bool>(clients: &[&Client], what: &str, done: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sync(clients).await;
        if done().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `client` reads `body` as the room's last message.
async fn reads_last(client: &Client, room_id: &RoomId, body: &str) -> bool {
    readable_messages(client, room_id).await.last().map(String::as_str) == Some(body)
}

#[tokio::test]
async fn encrypted_chat_across_servers_with_a_new_remote_device() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new();
    let (a, _, b, _, _, _) = alice_and_bob(&ca, &[]).await;
    encrypted_chat_between(&a, ("alice", "alicepass"), &b, ("bob", "bobpassword")).await;
}

/// Alice of server `a` (name, password) and Bob of server `b` chat in an encrypted room of
/// Alice's: each decrypts the other's messages; Bob's new device appears on Alice's side and
/// decrypts her next message; Alice verifies Bob's device by emoji and signs his identity.
pub async fn encrypted_chat_between(
    a: &TestServer,
    (alice_name, alice_password): (&str, &str),
    b: &TestServer,
    (bob_name, bob_password): (&str, &str),
) {
    let alice = login(a, alice_name, alice_password).await;
    let bob = login(b, bob_name, bob_password).await;
    sync(&[&alice, &bob]).await;
    let bob_id = bob.user_id().unwrap().to_owned();

    // Alice creates an encrypted room and invites Bob, who joins through her server.
    let mut request = CreateRoomRequest::new();
    request.invite = vec![bob_id.clone()];
    let encryption = json!({ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } });
    request.initial_state = vec![Raw::from_json(serde_json::value::to_raw_value(&encryption).unwrap())];
    let room_id: OwnedRoomId = alice.create_room(request).await.expect("room created").room_id().to_owned();
    sync_until(&[&bob], "the invite reaching Bob", async || bob.get_room(&room_id).is_some()).await;
    bob.join_room_by_id(&room_id).await.expect("bob joins");
    sync_until(&[&alice, &bob], "Bob's join reaching Alice", async || {
        let room = alice.get_room(&room_id).unwrap();
        room.get_member_no_sync(&bob_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|member| *member.membership() == matrix_sdk::ruma::events::room::member::MembershipState::Join)
    })
    .await;

    // Bob's display name (from his member event) is in Alice's member list.
    let member = alice
        .get_room(&room_id)
        .unwrap()
        .get_member_no_sync(&bob_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(member.display_name(), Some(bob_name));

    // Each side decrypts the other's messages.
    send(&alice, &room_id, "Hello Bob, across servers").await;
    sync_until(&[&bob], "Bob decrypting Alice's message", async || {
        reads_last(&bob, &room_id, "Hello Bob, across servers").await
    })
    .await;
    send(&bob, &room_id, "Hello Alice, from my server").await;
    sync_until(&[&alice], "Alice decrypting Bob's message", async || {
        reads_last(&alice, &room_id, "Hello Alice, from my server").await
    })
    .await;

    // Bob's new device appears on Alice's side and decrypts her next message.
    let phone = login(b, bob_name, bob_password).await;
    sync(&[&phone]).await;
    let phone_id = phone.device_id().unwrap().to_owned();
    sync_until(&[&alice], "Bob's new device reaching Alice", async || {
        alice.encryption().get_device(&bob_id, &phone_id).await.ok().flatten().is_some()
    })
    .await;
    send(&alice, &room_id, "Welcome, phone").await;
    sync_until(&[&phone], "the phone decrypting Alice's message", async || {
        reads_last(&phone, &room_id, "Welcome, phone").await
    })
    .await;

    // Alice verifies Bob's first device by emoji, over to-device messages between servers.
    let alice_id = alice.user_id().unwrap().to_owned();
    let bob_device = alice
        .encryption()
        .get_device(&bob_id, bob.device_id().unwrap())
        .await
        .unwrap()
        .expect("Alice knows Bob's device");
    let request = bob_device.request_verification().await.expect("verification requested");
    let flow_id = request.flow_id().to_owned();
    sync_until(&[&bob], "the verification request reaching Bob", async || {
        bob.encryption().get_verification_request(&alice_id, &flow_id).await.is_some()
    })
    .await;
    let incoming = bob.encryption().get_verification_request(&alice_id, &flow_id).await.unwrap();
    incoming.accept().await.unwrap();
    sync_until(&[&alice], "Bob's acceptance reaching Alice", async || request.is_ready()).await;
    let alice_sas = request.start_sas().await.unwrap().expect("SAS starts");
    sync_until(&[&bob], "the SAS start reaching Bob", async || {
        bob.encryption()
            .get_verification(&alice_id, &flow_id)
            .await
            .and_then(|verification| verification.sas())
            .is_some()
    })
    .await;
    let bob_sas = bob.encryption().get_verification(&alice_id, &flow_id).await.unwrap().sas().unwrap();
    bob_sas.accept().await.unwrap();
    sync_until(&[&alice, &bob], "the emoji", async || {
        alice_sas.can_be_presented() && bob_sas.can_be_presented()
    })
    .await;
    let emoji =
        |sas: &matrix_sdk::encryption::verification::SasVerification| sas.emoji().expect("emoji shown").map(|emoji| emoji.symbol).to_vec();
    assert_eq!(emoji(&alice_sas), emoji(&bob_sas), "both sides show the same emoji");
    alice_sas.confirm().await.unwrap();
    bob_sas.confirm().await.unwrap();
    sync_until(&[&alice, &bob], "the verification completing", async || {
        alice_sas.is_done() && bob_sas.is_done()
    })
    .await;

    // Cross-signing across servers: Alice signs Bob's identity and sees him verified.
    alice.encryption().bootstrap_cross_signing(None).await.expect("alice bootstraps");
    bob.encryption().bootstrap_cross_signing(None).await.expect("bob bootstraps");
    sync(&[&alice, &bob]).await;
    let bob_identity = alice
        .encryption()
        .request_user_identity(&bob_id)
        .await
        .unwrap()
        .expect("Bob's identity, from his server");
    bob_identity.verify().await.expect("alice verifies bob");
    let refetched = alice.encryption().request_user_identity(&bob_id).await.unwrap().unwrap();
    assert!(refetched.is_verified(), "Alice's signature of Bob's master key is kept");
}

/// A public room of Alice's (on `a`) that Bob (on `b`) joined and got her first message in:
/// its ID and that message's event ID.
async fn shared_room(a: &TestServer, alice: &str, b: &TestServer, bob: &str) -> (String, String) {
    let (_, created) = a
        .post("/_matrix/client/v3/createRoom", Some(alice), json!({ "preset": "public_chat" }))
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let via = a.base_url.trim_start_matches("https://");
    let (status, joined) = b
        .post(&format!("/_matrix/client/v3/join/{room}?server_name={via}"), Some(bob), json!({}))
        .await;
    assert_eq!(status.as_u16(), 200, "{joined}");
    let hello = send_text(a, alice, &room, "hello").await;
    wait_for_message(b, bob, &room, "hello").await;
    (room, hello)
}

#[tokio::test]
async fn typing_receipts_presence_and_to_device_messages_cross_servers() {
    let ca = TestCa::new();
    let (a, a_name, mut b, b_name, alice, bob) = alice_and_bob(&ca, &[]).await;
    let (alice_id, bob_id) = (format!("@alice:{a_name}"), format!("@bob:{b_name}"));
    let (room, hello) = shared_room(&a, &alice, &b, &bob).await;

    // Alice finds Bob in the user directory, with the name of his member event.
    let (status, _) = b
        .put(
            &format!("/_matrix/client/v3/profile/{bob_id}/displayname"),
            Some(&bob),
            json!({ "displayname": "Bob B." }),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, found) = a
            .post(
                "/_matrix/client/v3/user_directory/search",
                Some(&alice),
                json!({ "search_term": "bob b" }),
            )
            .await;
        if found["results"][0]["user_id"] == bob_id.as_str() {
            assert_eq!(found["results"][0]["display_name"], "Bob B.");
            break;
        }
        assert!(Instant::now() < deadline, "Bob is not in Alice's user directory: {found}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, first) = b.get("/_matrix/client/v3/sync?timeout=0", Some(&bob)).await;
    let bob_since = first["next_batch"].as_str().unwrap().to_owned();
    let (_, first) = a.get("/_matrix/client/v3/sync?timeout=0", Some(&alice)).await;
    let alice_since = first["next_batch"].as_str().unwrap().to_owned();

    // Alice types: Bob sees it.
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{alice_id}"),
            Some(&alice),
            json!({ "typing": true, "timeout": 20000 }),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    sync_for(&b, &bob, &bob_since, "Alice's typing", |answer| {
        ephemeral(answer, &room)
            .iter()
            .any(|e| e["type"] == "m.typing" && e["content"]["user_ids"] == json!([alice_id]))
    })
    .await;

    // Bob reads Alice's message (in the main timeline): Alice sees his threaded receipt.
    let (status, _) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{hello}"),
            Some(&bob),
            json!({ "thread_id": "main" }),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    sync_for(&a, &alice, &alice_since, "Bob's threaded receipt", |answer| {
        ephemeral(answer, &room)
            .iter()
            .any(|e| e["type"] == "m.receipt" && e["content"][&hello]["m.read"][&bob_id]["thread_id"] == "main")
    })
    .await;

    // Alice's presence and status reach Bob.
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/presence/{alice_id}/status"),
            Some(&alice),
            json!({ "presence": "online", "status_msg": "around" }),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    let presence = wait_for_status(&b, &bob, &alice_id, "around").await;
    assert_eq!(presence["presence"], "online");

    // Bob's server is down while Alice sends his device a to-device message: it arrives once,
    // after the restart.
    let (_, devices) = b.get("/_matrix/client/v3/devices", Some(&bob)).await;
    let bob_device = devices["devices"][0]["device_id"].as_str().unwrap().to_owned();
    b.stop();
    let (status, _) = a
        .put(
            "/_matrix/client/v3/sendToDevice/m.hearth.test/txn1",
            Some(&alice),
            json!({ "messages": { &bob_id: { &bob_device: { "note": "while you were away" } } } }),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    b.restart().await;
    a.admin(&["federation", "retry", &b_name]);
    let answer = sync_for(&b, &bob, &bob_since, "the to-device message", |answer| {
        answer["to_device"]["events"].as_array().is_some_and(|events| !events.is_empty())
    })
    .await;
    let events = answer["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["sender"], alice_id.as_str());
    assert_eq!(events[0]["content"]["note"], "while you were away");
    let next = answer["next_batch"].as_str().unwrap();
    let (_, later) = b.get(&format!("/_matrix/client/v3/sync?timeout=0&since={next}"), Some(&bob)).await;
    assert!(
        later["to_device"]["events"].as_array().is_none_or(Vec::is_empty),
        "delivered twice: {later}"
    );
}

#[tokio::test]
async fn remote_media_is_fetched_once_and_openid_tokens_are_checked() {
    let ca = TestCa::new();
    let (mut a, a_name, b, _, alice, bob) = alice_and_bob(&ca, &[]).await;
    let image = png(640, 480);
    let (status, uploaded) = upload(&a, &alice, "image/png", "cat.png", image.clone()).await;
    assert_eq!(status.as_u16(), 200, "{uploaded}");
    let mxc = uploaded["content_uri"].as_str().unwrap().strip_prefix("mxc://").unwrap().to_owned();
    assert!(mxc.starts_with(&a_name));

    // Bob's server fetches Alice's image over federation: the same bytes, and a thumbnail.
    let (status, headers, bytes) = fetch(&b, &format!("/_matrix/client/v1/media/download/{mxc}"), Some(&bob), None).await;
    assert_eq!(status.as_u16(), 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(bytes, image, "the remote image arrives unchanged");
    assert_eq!(headers["content-type"], "image/png");
    let thumbnail = format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=96&height=96&method=crop");
    let (status, _, bytes) = fetch(&b, &thumbnail, Some(&bob), None).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(decoded_size(&bytes), (96, 96));

    // A stores nothing of B's; with A gone, B still serves the image it fetched once.
    a.stop();
    let (status, _, bytes) = fetch(&b, &format!("/_matrix/client/v1/media/download/{mxc}"), Some(&bob), None).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(bytes, image);
    let (status, _, _) = fetch(&b, &format!("/_matrix/client/v1/media/download/{a_name}/unknown"), Some(&bob), None).await;
    assert!(status.is_server_error() || status.as_u16() == 404, "{status}");
    a.restart().await;
    // Purging cached remote media drops it here; the next download fetches it again.
    let (output, purged) = b.admin(&["media", "purge", "--older-than", "0s", "--remote"]);
    assert!(output.status.success(), "{purged}");
    let (status, _, bytes) = fetch(&b, &format!("/_matrix/client/v1/media/download/{mxc}"), Some(&bob), None).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(bytes, image);

    // An OpenID token of Alice's, checked with her server as a widget would.
    let (status, token) = a
        .post(
            &format!("/_matrix/client/v3/user/@alice:{a_name}/openid/request_token"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], a_name.as_str());
    let access_token = token["access_token"].as_str().unwrap();
    let (status, info) = a
        .get(&format!("/_matrix/federation/v1/openid/userinfo?access_token={access_token}"), None)
        .await;
    assert_eq!(status.as_u16(), 200, "{info}");
    assert_eq!(info["sub"], format!("@alice:{a_name}"));
    let answer = a.get("/_matrix/federation/v1/openid/userinfo?access_token=forged", None).await;
    assert_error(&answer, 401, "M_UNKNOWN_TOKEN");
    let answer = a
        .post(
            &format!("/_matrix/client/v3/user/@bob:{a_name}/openid/request_token"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_error(&answer, 403, "M_FORBIDDEN");
}

/// Uploads made-up identity keys for a device (the server checks whose they are, not the keys).
async fn upload_device_keys(server: &TestServer, token: &str, user: &str, device: &str) {
    let keys = json!({
        "user_id": user, "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": { format!("curve25519:{device}"): "curve", format!("ed25519:{device}"): "ed" },
        "signatures": {},
    });
    let (status, body) = server
        .post("/_matrix/client/v3/keys/upload", Some(token), json!({ "device_keys": keys }))
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
}

/// The devices of `user` that `token`'s `keys/query` lists (and the servers that failed).
async fn queried_devices(server: &TestServer, token: &str, user: &str) -> (Vec<String>, Value) {
    let (_, answer) = server
        .post("/_matrix/client/v3/keys/query", Some(token), json!({ "device_keys": { user: [] } }))
        .await;
    let mut devices: Vec<String> = answer["device_keys"][user]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(id, _)| id.clone())
        .collect();
    devices.sort();
    (devices, answer["failures"].clone())
}

#[tokio::test]
async fn remote_device_lists_are_cached_and_kept_current() {
    let ca = TestCa::new();
    let (a, _, mut b, b_name, alice, bob) = alice_and_bob(&ca, &[]).await;
    let bob_id = format!("@bob:{b_name}");
    shared_room(&a, &alice, &b, &bob).await;
    let (_, first) = a.get("/_matrix/client/v3/sync?timeout=0", Some(&alice)).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // Bob's first device gets keys: Alice hears of it, and sees it.
    let (_, whoami) = b.get("/_matrix/client/v3/account/whoami", Some(&bob)).await;
    let laptop = whoami["device_id"].as_str().unwrap().to_owned();
    upload_device_keys(&b, &bob, &bob_id, &laptop).await;
    sync_for(&a, &alice, &since, "Bob's device change", |answer| {
        answer["device_lists"]["changed"]
            .as_array()
            .is_some_and(|users| users.contains(&json!(bob_id)))
    })
    .await;
    eventually("Bob's device showing", async || {
        queried_devices(&a, &alice, &bob_id).await.0 == [laptop.clone()]
    })
    .await;

    // A second device, then its deletion: each update follows the one before.
    let (_, login) = b.login("bob", "bobpassword").await;
    let (phone_token, phone) = (
        login["access_token"].as_str().unwrap().to_owned(),
        login["device_id"].as_str().unwrap().to_owned(),
    );
    upload_device_keys(&b, &phone_token, &bob_id, &phone).await;
    let mut both = vec![laptop.clone(), phone.clone()];
    both.sort();
    eventually("Bob's phone showing", async || queried_devices(&a, &alice, &bob_id).await.0 == both).await;
    let (status, _) = b.post("/_matrix/client/v3/logout", Some(&phone_token), json!({})).await;
    assert_eq!(status.as_u16(), 200);
    eventually("Bob's phone going", async || {
        queried_devices(&a, &alice, &bob_id).await.0 == [laptop.clone()]
    })
    .await;

    // Alice's server answers from its copy while Bob's is down.
    b.stop();
    let (devices, failures) = queried_devices(&a, &alice, &bob_id).await;
    assert_eq!(devices, [laptop]);
    assert!(failures.as_object().is_none_or(|failures| failures.is_empty()), "{failures}");
    b.restart().await;
}
