//! `/sync`: initial and incremental, invites, joins and leaves, account data, long polls that
//! wake on a new message, bad tokens, crash safety, and matrix-sdk living on it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error, message_bodies};

pub async fn sync(server: &TestServer, token: &str, since: Option<&str>, timeout_ms: u64) -> Value {
    let path = match since {
        Some(since) => format!("/_matrix/client/v3/sync?since={since}&timeout={timeout_ms}"),
        None => "/_matrix/client/v3/sync".to_owned(),
    };
    let (status, body) = server.get(&path, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Sends a message event; returns its event ID.
pub async fn send_message(server: &TestServer, token: &str, room: &str, txn: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    server.put(&path, Some(token), content).await.1["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A server where alice made a public room that bob joined: (server, alice, bob, room).
pub async fn alice_and_bob_in_a_public_room() -> (TestServer, String, String, String) {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let (_, created) = server
        .post("/_matrix/client/v3/createRoom", Some(&alice), json!({ "preset": "public_chat" }))
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    server.post(&format!("/_matrix/client/v3/join/{room}"), Some(&bob), json!({})).await;
    (server, alice, bob, room)
}

fn timeline_bodies(sync: &Value, room: &str) -> Vec<String> {
    message_bodies(&sync["rooms"]["join"][room]["timeline"]["events"])
}

#[tokio::test]
async fn initial_and_incremental_sync_and_long_polls() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let (_, created) = server
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "name": "Porch", "invite": ["@bob:localhost"] }),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();

    // Bob's first sync shows the invite with the room's name.
    let first = sync(&server, &bob, None, 0).await;
    let invite_state = first["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap();
    assert!(
        invite_state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Porch"),
        "{first}"
    );
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // He joins: the next sync has the room with its whole state (in `state`, or in the
    // timeline when the room's history is short enough to fit).
    server.post(&format!("/_matrix/client/v3/join/{room}"), Some(&bob), json!({})).await;
    let joined = sync(&server, &bob, Some(&since), 0).await;
    let section = &joined["rooms"]["join"][&room];
    let types: Vec<&str> = [&section["state"]["events"], &section["timeline"]["events"]]
        .iter()
        .filter_map(|events| events.as_array())
        .flatten()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for expected in ["m.room.create", "m.room.power_levels", "m.room.name", "m.room.member"] {
        assert!(types.contains(&expected), "{expected}: {joined}");
    }
    // The events carry no room ID: the room's key says it (the spec's ClientEventWithoutRoomID).
    for list in [&section["state"]["events"], &section["timeline"]["events"]] {
        assert!(list.as_array().unwrap().iter().all(|e| e.get("room_id").is_none()), "{joined}");
    }
    assert_eq!(joined["rooms"]["join"][&room]["summary"]["m.joined_member_count"], 2);
    let since = joined["next_batch"].as_str().unwrap().to_owned();

    // A long poll returns with alice's message (a missed wake-up would sleep 30 s and fail).
    let poll = {
        let (base, bob, since) = (server.base_url.clone(), bob.clone(), since.clone());
        tokio::spawn(async move {
            let url = format!("{base}/_matrix/client/v3/sync?since={since}&timeout=30000");
            reqwest::Client::new()
                .get(url)
                .bearer_auth(bob)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/hi");
    server
        .put(&path, Some(&alice), json!({ "msgtype": "m.text", "body": "welcome!" }))
        .await;
    let woken = poll.await.unwrap();
    assert_eq!(timeline_bodies(&woken, &room), vec!["welcome!"], "{woken}");
    let since = woken["next_batch"].as_str().unwrap().to_owned();

    // Nothing new: an empty answer once the (short) timeout passes.
    let idle = sync(&server, &bob, Some(&since), 50).await;
    assert!(idle["rooms"]["join"].as_object().is_none_or(|rooms| rooms.is_empty()), "{idle}");

    // Account data reaches the user's own sync.
    let alice_since = sync(&server, &alice, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    server
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/org.example.settings",
            Some(&alice),
            json!({ "theme": "dark" }),
        )
        .await;
    let changed = sync(&server, &alice, Some(&alice_since), 0).await;
    let events = changed["account_data"]["events"].as_array().unwrap();
    assert_eq!(events[0]["content"]["theme"], "dark", "{changed}");

    // Bob leaves: his next sync says so.
    server
        .post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&bob), json!({}))
        .await;
    let left = sync(&server, &bob, Some(&since), 0).await;
    assert!(left["rooms"]["leave"][&room].is_object(), "{left}");

    // Bad tokens are refused, never silently reset.
    assert_error(
        &server.get("/_matrix/client/v3/sync?since=nonsense", Some(&bob)).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get("/_matrix/client/v3/sync?since=s99999999", Some(&bob)).await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn a_crash_between_send_and_sync_loses_nothing() {
    let mut server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (_, created) = server.post("/_matrix/client/v3/createRoom", Some(&alice), json!({})).await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let since = sync(&server, &alice, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/k1");
    let (status, _) = server
        .put(&path, Some(&alice), json!({ "msgtype": "m.text", "body": "still here" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    server.crash_and_restart().await;
    let after = sync(&server, &alice, Some(&since), 0).await;
    assert_eq!(timeline_bodies(&after, &room), vec!["still here"], "{after}");
}

#[tokio::test]
async fn matrix_sdk_syncs_rooms_and_messages() {
    use matrix_sdk::config::SyncSettings;
    use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
    use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

    let server = TestServer::start(&[]).await;
    server.register("alice", "alicepass").await;
    let client = matrix_sdk::Client::builder()
        .homeserver_url(&server.base_url)
        .build()
        .await
        .unwrap();
    client.matrix_auth().login_username("alice", "alicepass").send().await.unwrap();
    let mut request = CreateRoomRequest::new();
    request.name = Some("Garden".into());
    let room = client.create_room(request).await.unwrap();
    room.send(RoomMessageEventContent::text_plain("first")).await.unwrap();

    let response = client.sync_once(SyncSettings::default()).await.expect("the SDK parses /sync");
    assert!(response.rooms.joined.contains_key(room.room_id()));
    let synced = client.get_room(room.room_id()).expect("the SDK knows the room");
    assert_eq!(synced.name().as_deref(), Some("Garden"));
    let settings = SyncSettings::default()
        .token(response.next_batch)
        .timeout(std::time::Duration::from_millis(100));
    let again = client.sync_once(settings).await.expect("an incremental sync");
    assert!(again.rooms.joined.is_empty(), "nothing changed");
}

#[tokio::test]
async fn read_receipts_reach_the_other_members() {
    let (server, alice, bob, room) = alice_and_bob_in_a_public_room().await;
    let sent = send_message(&server, &alice, &room, "r1", json!({ "msgtype": "m.text", "body": "seen?" })).await;
    let event_id = sent.as_str();
    let since = sync(&server, &alice, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    let receipt = |kind: &'static str| format!("/_matrix/client/v3/rooms/{room}/receipt/{kind}/{event_id}");
    let (status, body) = server.post(&receipt("m.read.private"), Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server.post(&receipt("m.read"), Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let update = sync(&server, &alice, Some(&since), 0).await;
    let ephemeral = &update["rooms"]["join"][&room]["ephemeral"]["events"][0];
    assert_eq!(ephemeral["type"], "m.receipt", "{update}");
    assert!(
        ephemeral["content"][event_id]["m.read"]["@bob:localhost"]["ts"].is_u64(),
        "{update}"
    );
    assert!(
        ephemeral["content"][event_id]["m.read"]["@bob:localhost"]
            .get("thread_id")
            .is_none(),
        "an unthreaded receipt: {update}"
    );
    assert!(
        ephemeral["content"][event_id]["m.read.private"].is_null(),
        "bob's private receipt is his own"
    );
    let (_, bobs) = server.get("/_matrix/client/v3/sync", Some(&bob)).await;
    assert!(bobs["rooms"]["join"][&room]["ephemeral"]["events"][0]["content"][event_id]["m.read.private"]["@bob:localhost"].is_object());

    // Bob reads on: his receipt moves, in the syncs since either point.
    let next = update["next_batch"].as_str().unwrap();
    let later = send_message(&server, &alice, &room, "r2", json!({ "msgtype": "m.text", "body": "and this?" })).await;
    let later_id = later.as_str();
    let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{later_id}");
    assert_eq!(server.post(&path, Some(&bob), json!({})).await.0, StatusCode::OK);
    for from in [next, since.as_str()] {
        let moved = sync(&server, &alice, Some(from), 0).await;
        let content = &moved["rooms"]["join"][&room]["ephemeral"]["events"][0]["content"];
        assert!(content[later_id]["m.read"]["@bob:localhost"].is_object(), "{moved}");
        assert!(content[event_id].is_null(), "the receipt moved on: {moved}");
    }
    // A first sync shows each receipt where it is now.
    let first = sync(&server, &alice, None, 0).await;
    let content = &first["rooms"]["join"][&room]["ephemeral"]["events"][0]["content"];
    assert!(content[later_id]["m.read"]["@bob:localhost"].is_object(), "{first}");
    assert!(content[event_id].is_null(), "{first}");

    // His receipt in the main thread of the same event: the event's content names him once,
    // with the later receipt (a JSON object has each user once).
    let next = sync(&server, &alice, Some(since.as_str()), 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        server.post(&path, Some(&bob), json!({ "thread_id": "main" })).await.0,
        StatusCode::OK
    );
    for from in [next.as_str(), since.as_str()] {
        // The answer's text: a parsed object would hide a name given twice.
        let url = format!("{}/_matrix/client/v3/sync?since={from}", server.base_url);
        let both = server.http.get(url).bearer_auth(&alice).send().await.unwrap().text().await.unwrap();
        let receipts = &both[both.find(r#""m.receipt""#).unwrap()..];
        assert_eq!(receipts.matches("@bob:localhost").count(), 1, "{both}");
        assert!(receipts.contains(r#""thread_id":"main""#), "{both}");
    }
}

#[tokio::test]
async fn typing_reaches_the_other_members_and_lapses() {
    let (server, alice, bob, room) = alice_and_bob_in_a_public_room().await;
    let since = sync(&server, &alice, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let typing = |sync: &Value| -> Option<Vec<String>> {
        let events = sync["rooms"]["join"][&room]["ephemeral"]["events"].as_array()?;
        let typing = events.iter().find(|e| e["type"] == "m.typing")?;
        Some(
            typing["content"]["user_ids"]
                .as_array()?
                .iter()
                .map(|u| u.as_str().unwrap().to_owned())
                .collect(),
        )
    };

    let path = format!("/_matrix/client/v3/rooms/{room}/typing/@bob:localhost");
    assert_error(
        &server
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/typing/@alice:localhost"),
                Some(&bob),
                json!({ "typing": true, "timeout": 1000 }),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (status, body) = server.put(&path, Some(&bob), json!({ "typing": true, "timeout": 300 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let started = sync(&server, &alice, Some(&since), 0).await;
    assert_eq!(typing(&started), Some(vec!["@bob:localhost".to_owned()]), "{started}");

    // The notification lapses after its timeout, and a long poll is woken for it.
    let since = started["next_batch"].as_str().unwrap().to_owned();
    let lapsed = sync(&server, &alice, Some(&since), 30_000).await;
    assert_eq!(typing(&lapsed), Some(vec![]), "{lapsed}");

    // Stopping explicitly works too; a client may leave the timeout out.
    let since = lapsed["next_batch"].as_str().unwrap().to_owned();
    let (status, body) = server.put(&path, Some(&bob), json!({ "typing": true })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.put(&path, Some(&bob), json!({ "typing": false })).await;
    let stopped = sync(&server, &alice, Some(&since), 0).await;
    assert_eq!(typing(&stopped), Some(vec![]), "{stopped}");
}

#[tokio::test]
async fn presence_and_room_tags() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let (carol, _) = server.register("carol", "carolpass").await;
    let (_, created) = server
        .post("/_matrix/client/v3/createRoom", Some(&alice), json!({ "preset": "public_chat" }))
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    server.post(&format!("/_matrix/client/v3/join/{room}"), Some(&bob), json!({})).await;
    let since = sync(&server, &bob, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    let status_path = "/_matrix/client/v3/presence/@alice:localhost/status";
    let (status, body) = server
        .put(
            status_path,
            Some(&alice),
            json!({ "presence": "unavailable", "status_msg": "in a meeting" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, seen) = server.get(status_path, Some(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(
        (seen["presence"].as_str(), seen["status_msg"].as_str()),
        (Some("unavailable"), Some("in a meeting"))
    );
    assert_error(&server.get(status_path, Some(&carol)).await, 403, "M_FORBIDDEN");
    assert_error(
        &server.put(status_path, Some(&bob), json!({ "presence": "online" })).await,
        403,
        "M_FORBIDDEN",
    );
    let update = sync(&server, &bob, Some(&since), 0).await;
    let presence = update["presence"]["events"].as_array().unwrap();
    let alices = presence
        .iter()
        .find(|e| e["sender"] == "@alice:localhost")
        .expect("alice's presence");
    assert_eq!(alices["content"]["status_msg"], "in a meeting", "{update}");

    // Tags live in the room's account data and reach the user's sync.
    let since = update["next_batch"].as_str().unwrap().to_owned();
    let tag_path = format!("/_matrix/client/v3/user/@bob:localhost/rooms/{room}/tags/m.favourite");
    let (status, _) = server.put(&tag_path, Some(&bob), json!({ "order": 0.5 })).await;
    assert_eq!(status, StatusCode::OK);
    let (_, tags) = server
        .get(&format!("/_matrix/client/v3/user/@bob:localhost/rooms/{room}/tags"), Some(&bob))
        .await;
    assert_eq!(tags["tags"]["m.favourite"]["order"], 0.5);
    let tagged = sync(&server, &bob, Some(&since), 0).await;
    let account_data = tagged["rooms"]["join"][&room]["account_data"]["events"].as_array().unwrap();
    assert!(
        account_data
            .iter()
            .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["m.favourite"].is_object()),
        "{tagged}"
    );
    let (status, _) = server.request(reqwest::Method::DELETE, &tag_path, Some(&bob), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, tags) = server
        .get(&format!("/_matrix/client/v3/user/@bob:localhost/rooms/{room}/tags"), Some(&bob))
        .await;
    assert_eq!(tags["tags"], json!({}));
}

#[tokio::test]
async fn to_device_messages_are_delivered_once() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, bob_device) = server.register("bob", "bobpassword").await;
    let since = sync(&server, &bob, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    let body = json!({ "messages": { "@bob:localhost": { bob_device.clone(): { "hello": "device" }, "*": { "hello": "everyone" } } } });
    for _ in 0..2 {
        // The second time is a retry of the same transaction: nothing new is queued.
        let (status, answer) = server
            .put("/_matrix/client/v3/sendToDevice/org.example.ping/t1", Some(&alice), body.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let delivered = sync(&server, &bob, Some(&since), 0).await;
    let events = delivered["to_device"]["events"].as_array().expect("to-device events");
    let mut greetings: Vec<&str> = events.iter().map(|e| e["content"]["hello"].as_str().unwrap()).collect();
    greetings.sort();
    assert_eq!(greetings, vec!["device", "everyone"], "{delivered}");
    assert_eq!(events[0]["sender"], "@alice:localhost");
    assert_eq!(events[0]["type"], "org.example.ping");

    // Acknowledged by the next sync: not delivered again.
    let next = delivered["next_batch"].as_str().unwrap().to_owned();
    let again = sync(&server, &bob, Some(&next), 0).await;
    assert!(
        again["to_device"]["events"].as_array().is_none_or(|events| events.is_empty()),
        "{again}"
    );
}

#[tokio::test]
async fn lazy_loaded_members_and_state_filters() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let (carol, _) = server.register("carol", "carolpass").await;
    let (_, created) = server
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "preset": "public_chat", "name": "Lazy" }),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    for token in [&bob, &carol] {
        server
            .post(&format!("/_matrix/client/v3/join/{room}"), Some(token), json!({}))
            .await;
    }
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/l1"),
            Some(&alice),
            json!({ "msgtype": "m.text", "body": "hi" }),
        )
        .await;

    let state_of = |filter: Value| {
        let (server, bob, room) = (&server, bob.clone(), room.clone());
        async move {
            let filter = url::form_urlencoded::byte_serialize(filter.to_string().as_bytes()).collect::<String>();
            let (status, body) = server.get(&format!("/_matrix/client/v3/sync?filter={filter}"), Some(&bob)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["rooms"]["join"][&room]["state"]["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| format!("{} {}", e["type"].as_str().unwrap(), e["state_key"].as_str().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let lazy = state_of(json!({ "room": { "timeline": { "limit": 1 }, "state": { "lazy_load_members": true } } })).await;
    assert!(lazy.contains(&"m.room.member @alice:localhost".to_owned()), "the sender: {lazy:?}");
    assert!(lazy.contains(&"m.room.member @bob:localhost".to_owned()), "the user: {lazy:?}");
    assert!(
        !lazy.contains(&"m.room.member @carol:localhost".to_owned()),
        "a silent member: {lazy:?}"
    );
    assert!(lazy.contains(&"m.room.name ".to_owned()));
    let eager = state_of(json!({ "room": { "timeline": { "limit": 1 } } })).await;
    assert!(eager.contains(&"m.room.member @carol:localhost".to_owned()), "{eager:?}");
    let names_only = state_of(json!({ "room": { "timeline": { "limit": 1 }, "state": { "types": ["m.room.name"] } } })).await;
    assert_eq!(names_only, vec!["m.room.name ".to_owned()]);
}

pub fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn profile_changes_reach_the_members_of_every_room() {
    let (server, alice, bob, room) = alice_and_bob_in_a_public_room().await;
    let since = sync(&server, &bob, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let sliding_path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
    let sliding_request = json!({ "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 5,
        "required_state": [["m.room.member", "*"]] } } });
    let (_, first) = server.post(sliding_path, Some(&bob), sliding_request.clone()).await;
    let pos = first["pos"].as_str().unwrap().to_owned();

    let (status, _) = server
        .put(
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            Some(&alice),
            json!({ "displayname": "Alice Liddell" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(
            "/_matrix/client/v3/profile/@alice:localhost/avatar_url",
            Some(&alice),
            json!({ "avatar_url": "mxc://localhost/rabbit" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // /sync: two new member events of Alice, still joined, the last with both fields.
    let incremental = sync(&server, &bob, Some(&since), 0).await;
    let members: Vec<&Value> = incremental["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["state_key"] == "@alice:localhost")
        .collect();
    assert_eq!(members.len(), 2, "{incremental}");
    let last = &members[1]["content"];
    assert_eq!(last["membership"], "join");
    assert_eq!(last["displayname"], "Alice Liddell");
    assert_eq!(last["avatar_url"], "mxc://localhost/rabbit");

    // Sliding sync carries the changed member event too.
    let (_, changed) = server
        .post(&format!("{sliding_path}?pos={pos}&timeout=0"), Some(&bob), sliding_request)
        .await;
    let names: Vec<&Value> = changed["rooms"][&room]["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state_key"] == "@alice:localhost")
        .map(|e| &e["content"]["displayname"])
        .collect();
    assert_eq!(names, [&json!("Alice Liddell")], "{changed}");

    // The room's member list, and the same name again changes nothing.
    let (_, members) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(&bob))
        .await;
    assert_eq!(members["joined"]["@alice:localhost"]["display_name"], "Alice Liddell");
    let next = incremental["next_batch"].as_str().unwrap();
    server
        .put(
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            Some(&alice),
            json!({ "displayname": "Alice Liddell" }),
        )
        .await;
    let quiet = sync(&server, &bob, Some(next), 0).await;
    assert!(quiet["rooms"]["join"][&room].is_null(), "{quiet}");
}

#[tokio::test]
async fn sync_tokens_page_and_every_room_section_is_complete() {
    let (server, alice, bob, room) = alice_and_bob_in_a_public_room().await;
    for n in 0..3 {
        send_message(
            &server,
            &alice,
            &room,
            &format!("m{n}"),
            json!({ "msgtype": "m.text", "body": format!("m{n}") }),
        )
        .await;
    }
    let initial = sync(&server, &bob, None, 0).await;
    let next_batch = initial["next_batch"].as_str().unwrap().to_owned();

    // A sync token is "at that stream position" wherever a pagination token goes.
    let (status, back) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=2&from={next_batch}"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(message_bodies(&back["chunk"]), ["m2", "m1"]);
    let (status, forward) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&from={next_batch}"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(forward["chunk"].as_array().unwrap().len(), 0);
    send_message(&server, &alice, &room, "m3", json!({ "msgtype": "m.text", "body": "m3" })).await;
    let (_, forward) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&from={next_batch}"),
            Some(&bob),
        )
        .await;
    assert_eq!(message_bodies(&forward["chunk"]), ["m3"]);
    let (_, bounded) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room}/messages?dir=b&from={}&to={next_batch}",
                forward["end"].as_str().unwrap_or("s999999")
            ),
            Some(&bob),
        )
        .await;
    assert!(message_bodies(&bounded["chunk"]).iter().all(|body| body == "m3"), "{bounded}");
    let (status, members) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/members?at={next_batch}"), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert_eq!(members["chunk"].as_array().unwrap().len(), 2);
    let prev_batch = initial["rooms"]["join"][&room]["timeline"]["prev_batch"].as_str().unwrap();
    let (status, _) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/members?at={prev_batch}"), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::OK);
    let first_event = back["chunk"][1]["event_id"].as_str().unwrap();
    let (status, relations) = server
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/relations/{first_event}?from={next_batch}"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{relations}");
    assert_error(
        &server
            .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from=xyz"), Some(&bob))
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // Every room object carries every sub-object of its section, empty when there is nothing.
    let (_, other) = server
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "invite": ["@bob:localhost"] }),
        )
        .await;
    let invited_room = other["room_id"].as_str().unwrap();
    server
        .post(&format!("/_matrix/client/v3/rooms/{room}/leave"), Some(&bob), json!({}))
        .await;
    let after = sync(&server, &bob, Some(&next_batch), 0).await;
    let left = &after["rooms"]["leave"][&room];
    for sub_object in ["state", "timeline", "account_data"] {
        assert!(left[sub_object]["events"].is_array(), "leave.{sub_object}: {after}");
    }
    assert!(after["rooms"]["invite"][invited_room]["invite_state"]["events"].is_array());
    let alice_after = sync(&server, &alice, Some(&next_batch), 0).await;
    let joined = &alice_after["rooms"]["join"][&room];
    for sub_object in ["state", "timeline", "ephemeral", "account_data"] {
        assert!(joined[sub_object]["events"].is_array(), "join.{sub_object}: {alice_after}");
    }
    assert_eq!(joined["timeline"]["limited"], false);
}
