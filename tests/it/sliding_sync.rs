//! Simplified Sliding Sync (MSC4186): `matrix-sdk`'s sliding sync discovers it, lists rooms
//! in recency order, long-polls for new messages and decrypts an encrypted room through the
//! to-device and e2ee extensions; plain HTTP checks windows, filters, required state,
//! incremental responses and the extensions' exact answers.

use std::time::{Duration, Instant};

use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::room::Room;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::api::client::sync::sync_events::v5 as http;
use matrix_sdk::ruma::events::StateEventType;
use matrix_sdk::ruma::events::room::message::{OriginalSyncRoomMessageEvent, RoomMessageEventContent};
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use matrix_sdk::sliding_sync::{SlidingSyncList, SlidingSyncMode, Version};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::{TestServer, assert_error};
use crate::sdk::user;

const SLIDING: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

async fn named_room(client: &Client, name: &str, invite: &[&Client], encrypted: bool) -> OwnedRoomId {
    let mut request = CreateRoomRequest::new();
    request.name = Some(name.to_owned());
    request.invite = invite.iter().map(|other| other.user_id().unwrap().to_owned()).collect();
    if encrypted {
        let encryption = json!({ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } });
        request.initial_state = vec![Raw::from_json(serde_json::value::to_raw_value(&encryption).unwrap())];
    }
    client.create_room(request).await.expect("room created").room_id().to_owned()
}

/// The client's joined rooms, most recent first by the bump stamps sliding sync gave them.
fn rooms_by_recency(client: &Client) -> Vec<String> {
    let mut rooms: Vec<(u64, String)> = client
        .joined_rooms()
        .iter()
        .map(|room| (room.recency_stamp().map(u64::from).unwrap_or(0), room.name().unwrap_or_default()))
        .collect();
    rooms.sort_by_key(|room| std::cmp::Reverse(room.0));
    rooms.into_iter().map(|(_, name)| name).collect()
}

#[tokio::test]
async fn matrix_sdk_sliding_sync_lists_by_recency_long_polls_and_decrypts() {
    let server = TestServer::start(&[]).await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    bob.sync_once(SyncSettings::default().timeout(std::time::Duration::ZERO))
        .await
        .unwrap();

    // Discovery the way Element X does it: /versions' unstable features.
    assert!(
        alice
            .available_sliding_sync_versions()
            .await
            .iter()
            .any(|version| matches!(version, Version::Native)),
        "sliding sync is advertised"
    );
    let mut to_device = http::request::ToDevice::default();
    to_device.enabled = Some(true);
    let mut e2ee = http::request::E2EE::default();
    e2ee.enabled = Some(true);
    let sliding = alice
        .sliding_sync("main")
        .unwrap()
        .version(Version::Native)
        .add_list(
            SlidingSyncList::builder("all")
                .sync_mode(SlidingSyncMode::new_selective().add_range(0..=19))
                .timeline_limit(10)
                .required_state(vec![
                    (StateEventType::RoomName, String::new()),
                    (StateEventType::RoomEncryption, String::new()),
                    (StateEventType::RoomMember, "$LAZY".to_owned()),
                    (StateEventType::RoomMember, "$ME".to_owned()),
                ]),
        )
        .with_to_device_extension(to_device)
        .with_e2ee_extension(e2ee)
        .poll_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("sliding sync builds");
    let (sender, mut received) = mpsc::unbounded_channel();
    alice.add_event_handler(move |event: OriginalSyncRoomMessageEvent, room: Room| {
        let sender = sender.clone();
        async move {
            let _ = sender.send((room.room_id().to_owned(), event.content.body().to_owned()));
        }
    });
    // A first round uploads Alice's device keys (through the e2ee extension's key counts).
    sliding.sync_once().await.expect("first sliding sync");

    let secrets = named_room(&bob, "Secrets", &[&alice], true).await;
    let garden = named_room(&alice, "Garden", &[&bob], false).await;
    let kitchen = named_room(&alice, "Kitchen", &[&bob], false).await;
    alice.join_room_by_id(&secrets).await.expect("alice joins");
    bob.sync_once(SyncSettings::default().timeout(std::time::Duration::ZERO))
        .await
        .unwrap();
    bob.join_room_by_id(&garden).await.unwrap();
    bob.get_room(&garden)
        .unwrap()
        .send(RoomMessageEventContent::text_plain("the tulips are out"))
        .await
        .unwrap();
    for _ in 0..3 {
        sliding.sync_once().await.expect("sliding sync");
        if alice.joined_rooms().len() == 3 {
            break;
        }
    }
    assert_eq!(rooms_by_recency(&alice), ["Garden", "Kitchen", "Secrets"]);
    let mut seen = Vec::new();
    while let Ok(message) = received.try_recv() {
        seen.push(message);
    }
    assert!(seen.contains(&(garden.clone(), "the tulips are out".to_owned())), "{seen:?}");

    // Bob writes in the encrypted room: Alice's sliding sync brings the room key (to-device)
    // and the message, which she decrypts; the room moves to the top.
    bob.sync_once(SyncSettings::default().timeout(std::time::Duration::ZERO))
        .await
        .unwrap();
    bob.get_room(&secrets)
        .unwrap()
        .send(RoomMessageEventContent::text_plain("the password is swordfish"))
        .await
        .expect("bob sends encrypted");
    let decrypted = wait_for_message(&sliding, &mut received, &secrets).await;
    assert_eq!(decrypted, "the password is swordfish");
    assert_eq!(rooms_by_recency(&alice), ["Secrets", "Garden", "Kitchen"]);

    // A waiting sliding sync returns as soon as a message arrives.
    let bobs_kitchen = {
        bob.sync_once(SyncSettings::default().timeout(std::time::Duration::ZERO))
            .await
            .unwrap();
        bob.join_room_by_id(&kitchen).await.unwrap()
    };
    sliding.sync_once().await.unwrap();
    while received.try_recv().is_ok() {}
    let poll = {
        let sliding = sliding.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let summary = sliding.sync_once().await.expect("long poll");
            (summary, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    bobs_kitchen
        .send(RoomMessageEventContent::text_plain("dinner is ready"))
        .await
        .unwrap();
    let (summary, waited) = poll.await.unwrap();
    assert!(summary.rooms.contains(&kitchen), "{summary:?}");
    assert!(
        waited < Duration::from_secs(5),
        "woken by the message, not the timeout ({waited:?})"
    );
    assert_eq!(received.try_recv().unwrap(), (kitchen.clone(), "dinner is ready".to_owned()));
    assert_eq!(rooms_by_recency(&alice)[0], "Kitchen");
}

/// Runs sliding syncs until a message of the room arrives; returns its body.
async fn wait_for_message(
    sliding: &matrix_sdk::sliding_sync::SlidingSync,
    received: &mut mpsc::UnboundedReceiver<(OwnedRoomId, String)>,
    room_id: &RoomId,
) -> String {
    for _ in 0..5 {
        sliding.sync_once().await.expect("sliding sync");
        while let Ok((room, body)) = received.try_recv() {
            if room == room_id {
                return body;
            }
        }
    }
    panic!("no message of {room_id} arrived");
}

async fn sliding(server: &TestServer, token: &str, pos: Option<&str>, body: Value) -> Value {
    let path = match pos {
        Some(pos) => format!("{SLIDING}?pos={pos}&timeout=10000"),
        None => SLIDING.to_owned(),
    };
    let (status, answer) = server.post(&path, Some(token), body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn create(server: &TestServer, token: &str, body: Value) -> String {
    let (_, created) = server.post("/_matrix/client/v3/createRoom", Some(token), body).await;
    created["room_id"].as_str().unwrap().to_owned()
}

async fn say(server: &TestServer, token: &str, room: &str, txn: &str, body: &str) {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let (status, answer) = server.put(&path, Some(token), json!({ "msgtype": "m.text", "body": body })).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn sliding_sync_windows_filters_required_state_and_extensions() {
    let server = TestServer::start(&[]).await;
    let (alice, alice_device) = server.register("alice", "pw").await;
    let (bob, _) = server.register("bob", "pw").await;

    let mut rooms = Vec::new();
    for name in ["one", "two", "three", "four"] {
        rooms.push(create(&server, &alice, json!({ "name": name, "invite": ["@bob:localhost"] })).await);
    }
    let space = create(
        &server,
        &alice,
        json!({ "name": "space", "creation_content": { "type": "m.space" } }),
    )
    .await;
    let unnamed = create(&server, &bob, json!({ "invite": ["@alice:localhost"] })).await;
    for room in &rooms[..2] {
        server.post(&format!("/_matrix/client/v3/join/{room}"), Some(&bob), json!({})).await;
    }
    say(&server, &bob, &rooms[1], "1", "two speaks").await;
    say(&server, &alice, &rooms[0], "2", "one speaks").await;

    let request = json!({
        "conn_id": "main",
        "lists": {
            "recent": { "ranges": [[0, 1]], "timeline_limit": 1,
                        "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"]],
                        "filters": { "not_room_types": ["m.space"], "is_invite": false } },
            "invites": { "ranges": [[0, 9]], "timeline_limit": 0, "filters": { "is_invite": true } },
            "spaces": { "ranges": [[0, 9]], "timeline_limit": 0, "filters": { "room_types": ["m.space"] } }
        },
        "extensions": { "to_device": { "enabled": true }, "e2ee": { "enabled": true }, "account_data": { "enabled": true } }
    });
    let first = sliding(&server, &alice, None, request.clone()).await;
    assert_eq!(first["lists"]["recent"]["count"], 4, "{first}");
    assert_eq!(first["lists"]["invites"]["count"], 1);
    assert_eq!(first["lists"]["spaces"]["count"], 1);
    let returned: Vec<&String> = first["rooms"].as_object().unwrap().keys().collect();
    // The two most recent rooms of the first list, the invite and the space.
    let mut expected = vec![&rooms[0], &rooms[1], &unnamed, &space];
    expected.sort();
    let mut returned_sorted = returned.clone();
    returned_sorted.sort();
    assert_eq!(returned_sorted, expected);
    let one = &first["rooms"][&rooms[0]];
    assert_eq!(one["initial"], true);
    assert_eq!(one["name"], "one");
    assert!(one["bump_stamp"].as_u64().unwrap() > first["rooms"][&rooms[1]]["bump_stamp"].as_u64().unwrap());
    assert_eq!(one["timeline"].as_array().unwrap().len(), 1);
    assert_eq!(one["timeline"][0]["content"]["body"], "one speaks");
    // Under their room, events carry no room ID, as in /sync.
    assert!(one["timeline"][0].get("room_id").is_none(), "{first}");
    assert_eq!(one["limited"], true);
    assert_eq!(one["joined_count"], 2);
    assert_eq!(one["invited_count"], 0);
    let state_types: Vec<(String, String)> = one["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["state_key"].as_str().unwrap().to_owned()))
        .collect();
    assert!(state_types.contains(&("m.room.name".into(), "".into())));
    assert!(state_types.contains(&("m.room.member".into(), "@alice:localhost".into())));
    assert!(
        !state_types.iter().any(|(kind, _)| kind == "m.room.create"),
        "only the required state: {state_types:?}"
    );
    // prev_batch continues into /messages.
    let prev_batch = one["prev_batch"].as_str().unwrap();
    let (_, older) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/messages?dir=b&from={prev_batch}&limit=1", rooms[0]),
            Some(&alice),
        )
        .await;
    assert_eq!(older["chunk"][0]["type"], "m.room.member");
    // The invite comes as stripped state.
    assert!(
        first["rooms"][&unnamed]["invite_state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create")
    );
    assert!(first["extensions"]["e2ee"]["device_one_time_keys_count"].is_object());
    assert!(first["extensions"]["to_device"]["next_batch"].is_string());
    let pos = first["pos"].as_str().unwrap().to_owned();

    // Incremental: a long poll wakes for a message in a known room and carries only it.
    let poll = {
        let url = format!("{}{SLIDING}?pos={pos}&timeout=10000", server.base_url);
        let (alice, body) = (alice.clone(), request.clone());
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(alice)
                .json(&body)
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    say(&server, &bob, &rooms[1], "3", "two again").await;
    let update = poll.await.unwrap();
    let updated: Vec<&String> = update["rooms"].as_object().unwrap().keys().collect();
    assert_eq!(updated, [&rooms[1]], "{update}");
    let two = &update["rooms"][&rooms[1]];
    assert!(two.get("initial").is_none(), "{two}");
    assert_eq!(two["timeline"][0]["content"]["body"], "two again");
    assert_eq!(two["num_live"], 1);
    let pos = update["pos"].as_str().unwrap().to_owned();

    // A room entering the window comes in full; the lists need not be sent again (sticky).
    say(&server, &alice, &rooms[3], "4", "four speaks").await;
    let entered = sliding(&server, &alice, Some(&pos), json!({ "conn_id": "main" })).await;
    assert_eq!(entered["rooms"][&rooms[3]]["initial"], true, "{entered}");
    let pos = entered["pos"].as_str().unwrap().to_owned();

    // To-device messages come through the extension until acknowledged by `since`.
    let message = json!({ "messages": { "@alice:localhost": { &alice_device: { "hello": "alice" } } } });
    server
        .put("/_matrix/client/v3/sendToDevice/org.example.hello/t1", Some(&bob), message)
        .await;
    let delivered = sliding(&server, &alice, Some(&pos), json!({ "conn_id": "main" })).await;
    let events = delivered["extensions"]["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{delivered}");
    assert_eq!(events[0]["content"]["hello"], "alice");
    let next_batch = delivered["extensions"]["to_device"]["next_batch"].as_str().unwrap().to_owned();
    let acknowledged = json!({ "conn_id": "main", "extensions": { "to_device": { "enabled": true, "since": next_batch } } });
    let (_, after) = server
        .post(
            &format!("{SLIDING}?pos={}&timeout=0", delivered["pos"].as_str().unwrap()),
            Some(&alice),
            acknowledged,
        )
        .await;
    assert!(
        after["extensions"]["to_device"]["events"]
            .as_array()
            .is_none_or(|events| events.is_empty()),
        "{after}"
    );

    // Room subscriptions bring a room outside every window.
    let subscribed = sliding(
        &server,
        &alice,
        None,
        json!({ "conn_id": "other", "room_subscriptions": { &rooms[2]: { "timeline_limit": 5, "required_state": [["*", "*"]] } } }),
    )
    .await;
    let three = &subscribed["rooms"][&rooms[2]];
    assert_eq!(three["name"], "three");
    assert!(
        three["required_state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create")
    );

    // A position the server does not know asks the client to start over.
    let (status, unknown) = server.post(&format!("{SLIDING}?pos=nonsense_1"), Some(&alice), json!({})).await;
    assert_error(&(status, unknown), 400, "M_UNKNOWN_POS");
}
