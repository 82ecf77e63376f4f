//! Rooms over plain HTTP: create, invite, join, chat, history paged both ways, power levels,
//! bans and who may read what, in every supported room version.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error, message_bodies};

/// Creates a room as `token` with `body`; returns its ID.
async fn create_room(server: &TestServer, token: &str, body: Value) -> String {
    let (status, response) = server.post("/_matrix/client/v3/createRoom", Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "createRoom: {response}");
    response["room_id"].as_str().unwrap().to_owned()
}

/// Sends a text message; returns the event ID.
async fn send_text(server: &TestServer, token: &str, room: &str, txn: &str, body: &str) -> (StatusCode, Value) {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    server.put(&path, Some(token), json!({ "msgtype": "m.text", "body": body })).await
}

/// Joins a room (by ID or alias) with an empty body, as some clients send.
async fn join(server: &TestServer, token: &str, room: &str) -> (StatusCode, Value) {
    server
        .post(&format!("/_matrix/client/v3/join/{room}"), Some(token), json!({}))
        .await
}

/// `POST /rooms/{room}/{action}` (invite, kick, ban, unban, leave, forget, …).
async fn room_post(server: &TestServer, token: &str, room: &str, action: &str, body: Value) -> (StatusCode, Value) {
    server
        .post(&format!("/_matrix/client/v3/rooms/{room}/{action}"), Some(token), body)
        .await
}

async fn messages(server: &TestServer, token: &str, room: &str, query: &str) -> (StatusCode, Value) {
    server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?{query}"), Some(token))
        .await
}

#[tokio::test]
async fn create_invite_join_and_chat_in_every_room_version() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;

    for version in ["10", "11", "12"] {
        let room = create_room(
            &server,
            &alice,
            json!({ "name": "General", "topic": "Anything goes", "invite": ["@bob:localhost"], "room_version": version }),
        )
        .await;
        if version == "12" {
            assert!(!room.contains(':'), "a v12 room ID is the create event's hash: {room}");
        }
        // Bob is invited, joins (with an empty body, as some clients send), and chats.
        let (status, body) = server
            .request(Method::POST, &format!("/_matrix/client/v3/join/{room}"), Some(&bob), None)
            .await;
        assert_eq!(status, StatusCode::OK, "v{version} join: {body}");
        let (status, sent) = send_text(&server, &bob, &room, "t1", "hello from bob").await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        // The same transaction ID is the same event.
        let (_, again) = send_text(&server, &bob, &room, "t1", "hello from bob").await;
        assert_eq!(again["event_id"], sent["event_id"]);
        assert_eq!(send_text(&server, &alice, &room, "t1", "hi bob").await.0, StatusCode::OK);

        let (status, joined) = server
            .get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(&alice))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(joined["joined"].as_object().unwrap().len(), 2, "{joined}");
        assert_eq!(joined["joined"]["@bob:localhost"]["display_name"], "bob");
        let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", Some(&bob)).await;
        assert!(rooms["joined_rooms"].as_array().unwrap().contains(&json!(room)));

        let (status, name) = server
            .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), Some(&bob))
            .await;
        assert_eq!((status, name), (StatusCode::OK, json!({ "name": "General" })));
        let (_, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), Some(&bob)).await;
        let types: Vec<&str> = state.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        for expected in [
            "m.room.create",
            "m.room.power_levels",
            "m.room.join_rules",
            "m.room.name",
            "m.room.topic",
            "m.room.history_visibility",
        ] {
            assert!(types.contains(&expected), "v{version} state lacks {expected}: {types:?}");
        }

        // History, newest first, with timestamps; the event itself by ID.
        let (status, page) = messages(&server, &alice, &room, "dir=b&limit=2").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let chunk = page["chunk"].as_array().unwrap();
        assert_eq!(chunk[0]["content"]["body"], "hi bob");
        assert_eq!(chunk[1]["content"]["body"], "hello from bob");
        assert!(chunk[0]["origin_server_ts"].as_u64().unwrap() >= chunk[1]["origin_server_ts"].as_u64().unwrap());
        assert_eq!(
            chunk[1]["unsigned"]["transaction_id"],
            Value::Null,
            "transaction IDs are only for the sender"
        );
        let event_path = format!("/_matrix/client/v3/rooms/{room}/event/{}", sent["event_id"].as_str().unwrap());
        let (status, event) = server.get(&event_path, Some(&bob)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(event["unsigned"]["transaction_id"], "t1");
        assert_eq!(event["sender"], "@bob:localhost");
    }
}

#[tokio::test]
async fn a_thousand_messages_page_both_ways_without_gaps_or_doubles() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let room = create_room(&server, &alice, json!({ "preset": "private_chat" })).await;
    for i in 0..1000 {
        let (status, body) = send_text(&server, &alice, &room, &format!("m{i}"), &format!("message {i}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let bodies = |chunk: &Value| -> Vec<(String, u64)> {
        chunk
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| {
                (
                    e["content"]["body"].as_str().unwrap().to_owned(),
                    e["origin_server_ts"].as_u64().unwrap(),
                )
            })
            .collect()
    };

    // Backward from the newest, 100 at a time.
    let mut backward = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(token) => format!("dir=b&limit=100&from={token}"),
            None => "dir=b&limit=100".to_owned(),
        };
        let (status, page) = messages(&server, &alice, &room, &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        backward.extend(bodies(&page["chunk"]));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    backward.reverse();
    let expected: Vec<String> = (0..1000).map(|i| format!("message {i}")).collect();
    assert_eq!(backward.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(), expected);
    assert!(backward.windows(2).all(|w| w[0].1 <= w[1].1), "timestamps are ordered");

    // Forward from the beginning, 150 at a time.
    let mut forward = Vec::new();
    let mut from = "t0".to_owned();
    loop {
        let (status, page) = messages(&server, &alice, &room, &format!("dir=f&limit=150&from={from}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        forward.extend(bodies(&page["chunk"]));
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    assert_eq!(forward.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(), expected);

    // A filter by type, and a bad token.
    let (_, page) = messages(
        &server,
        &alice,
        &room,
        "dir=f&limit=50&filter=%7B%22types%22%3A%5B%22m.room.n%2A%22%5D%7D",
    )
    .await;
    let types: Vec<&str> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.iter().all(|t| t.starts_with("m.room.n")), "{types:?}");
    assert_error(
        &messages(&server, &alice, &room, "dir=b&from=garbage").await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn power_levels_bans_and_who_may_read() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let (carol, _) = server.register("carol", "carolpass").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat", "name": "Town square" })).await;
    let (status, body) = room_post(&server, &bob, &room, "join", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A member cannot rename the room; promoted to 100 by the admin, they can.
    let name_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/");
    assert_error(
        &server.put(&name_path, Some(&bob), json!({ "name": "Bob's" })).await,
        403,
        "M_FORBIDDEN",
    );
    let pl_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/");
    let (_, mut levels) = server.get(&pl_path, Some(&alice)).await;
    levels["users"]["@bob:localhost"] = json!(100);
    let (status, body) = server.put(&pl_path, Some(&alice), levels).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.put(&name_path, Some(&bob), json!({ "name": "Bob's" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, name) = server.get(&name_path, Some(&alice)).await;
    assert_eq!(name["name"], "Bob's");

    // Carol never joined: no history, no state, no events.
    let (_, sent) = send_text(&server, &alice, &room, "a1", "members only").await;
    let event_id = sent["event_id"].as_str().unwrap();
    assert_error(&messages(&server, &carol, &room, "dir=b").await, 403, "M_FORBIDDEN");
    assert_error(
        &server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), Some(&carol)).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), Some(&carol))
            .await,
        403,
        "M_FORBIDDEN",
    );

    // Redaction: bob (now at 100) may redact alice's message; carol may not send at all.
    let (_, before) = messages(&server, &alice, &room, "dir=b&limit=1").await;
    assert_eq!(before["chunk"][0]["content"]["body"], "members only");
    let redact_path = format!("/_matrix/client/v3/rooms/{room}/redact/{event_id}/r1");
    let (status, body) = server.put(&redact_path, Some(&bob), json!({ "reason": "spam" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, redacted) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), Some(&alice))
        .await;
    assert_eq!(redacted["content"], json!({}));
    assert_eq!(redacted["unsigned"]["redacted_because"]["content"]["reason"], "spam");
    let (_, after) = messages(&server, &alice, &room, "dir=b&limit=2").await;
    let served = after["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["event_id"] == event_id)
        .unwrap();
    assert_eq!(
        (&served["content"], &served["unsigned"]["redacted_because"]["content"]["reason"]),
        (&json!({}), &json!("spam"))
    );
    assert_error(&send_text(&server, &carol, &room, "c1", "let me in").await, 403, "M_FORBIDDEN");

    // A ban keeps a user out; unbanned, they may come back.
    let (status, body) = room_post(
        &server,
        &alice,
        &room,
        "ban",
        json!({ "user_id": "@carol:localhost", "reason": "rude" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(&join(&server, &carol, &room).await, 403, "M_FORBIDDEN");
    let (status, _) = room_post(&server, &alice, &room, "unban", json!({ "user_id": "@carol:localhost" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(join(&server, &carol, &room).await.0, StatusCode::OK);

    // Bob leaves: he still reads what he saw, not what came after; then he forgets the room.
    let (status, _) = room_post(&server, &bob, &room, "leave", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    send_text(&server, &alice, &room, "a2", "after bob left").await;
    let (status, page) = messages(&server, &bob, &room, "dir=b&limit=50").await;
    assert_eq!(status, StatusCode::OK);
    let bodies = message_bodies(&page["chunk"]);
    assert!(!bodies.iter().any(|b| b == "after bob left"), "{bodies:?}");
    let (status, _) = room_post(&server, &bob, &room, "forget", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", Some(&bob)).await;
    assert_eq!(rooms["joined_rooms"], json!([]));

    // Kick: carol is removed by the admin; members list shows who is where.
    let (status, _) = room_post(&server, &alice, &room, "kick", json!({ "user_id": "@carol:localhost" })).await;
    assert_eq!(status, StatusCode::OK);
    let (_, members) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/members?membership=join"), Some(&alice))
        .await;
    let joined: Vec<&str> = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(joined, vec!["@alice:localhost"]);

    // Everything persists across a crash.
    let mut server = server;
    server.crash_and_restart().await;
    let (_, name) = server.get(&name_path, Some(&alice)).await;
    assert_eq!(name["name"], "Bob's");
    let (_, page) = messages(&server, &alice, &room, "dir=b&limit=1").await;
    assert_eq!(page["chunk"][0]["type"], "m.room.member");
}

#[tokio::test]
async fn aliases_and_the_public_directory() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let (carol, _) = server.register("carol", "carolpass").await;
    let room = create_room(
        &server,
        &alice,
        json!({ "room_alias_name": "general", "visibility": "public", "preset": "public_chat", "name": "General chat", "topic": "Say hi" }),
    )
    .await;

    let (status, alias) = server.get("/_matrix/client/v3/directory/room/%23general:localhost", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(alias, json!({ "room_id": room, "servers": ["localhost"] }));
    let (_, canonical) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias"),
            Some(&alice),
        )
        .await;
    assert_eq!(canonical["alias"], "#general:localhost");
    let (status, joined) = server
        .post("/_matrix/client/v3/join/%23general:localhost", Some(&bob), json!({}))
        .await;
    assert_eq!((status, joined["room_id"].as_str()), (StatusCode::OK, Some(room.as_str())));
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/createRoom",
                Some(&carol),
                json!({ "room_alias_name": "general" }),
            )
            .await,
        400,
        "M_ROOM_IN_USE",
    );
    assert_error(
        &server.get("/_matrix/client/v3/directory/room/%23nowhere:localhost", None).await,
        404,
        "M_NOT_FOUND",
    );

    // The directory lists the room, searchable by name, topic or alias.
    let (status, listed) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let entry = &listed["chunk"][0];
    assert_eq!(
        (entry["room_id"].as_str(), entry["num_joined_members"].as_u64()),
        (Some(room.as_str()), Some(2))
    );
    assert_eq!(
        (entry["name"].as_str(), entry["canonical_alias"].as_str()),
        (Some("General chat"), Some("#general:localhost"))
    );
    // `join_rule` defaults to "public" and may be left out.
    assert!(entry["join_rule"] == "public" || entry["join_rule"].is_null(), "{entry}");
    for (term, count) in [("GENER", 1), ("say", 1), ("nothing like it", 0)] {
        let (_, found) = server
            .post(
                "/_matrix/client/v3/publicRooms",
                Some(&carol),
                json!({ "filter": { "generic_search_term": term } }),
            )
            .await;
        assert_eq!(found["chunk"].as_array().unwrap().len(), count, "{term}: {found}");
    }

    // More aliases: a member may add one; only its creator or the room's admins remove it.
    let (status, body) = server
        .put(
            "/_matrix/client/v3/directory/room/%23lobby:localhost",
            Some(&bob),
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/directory/room/%23lobby:localhost",
                Some(&alice),
                json!({ "room_id": room }),
            )
            .await,
        409,
        "M_UNKNOWN",
    );
    let (_, aliases) = server.get(&format!("/_matrix/client/v3/rooms/{room}/aliases"), Some(&bob)).await;
    assert_eq!(aliases["aliases"], json!(["#general:localhost", "#lobby:localhost"]));
    assert_error(
        &server
            .request(
                Method::DELETE,
                "/_matrix/client/v3/directory/room/%23lobby:localhost",
                Some(&carol),
                None,
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (status, _) = server
        .request(
            Method::DELETE,
            "/_matrix/client/v3/directory/room/%23lobby:localhost",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Listing: a plain member may not unlist the room; its admin may.
    let list_path = format!("/_matrix/client/v3/directory/list/room/{room}");
    assert_error(
        &server.put(&list_path, Some(&bob), json!({ "visibility": "private" })).await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        server.put(&list_path, Some(&alice), json!({ "visibility": "private" })).await.0,
        StatusCode::OK
    );
    assert_eq!(server.get(&list_path, None).await.1, json!({ "visibility": "private" }));
    let (_, listed) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(listed["chunk"], json!([]));
}

#[tokio::test]
async fn relations_context_timestamps_and_knocking() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let room = create_room(
        &server,
        &alice,
        json!({ "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }] }),
    )
    .await;
    let mut ids = Vec::new();
    for (i, body) in ["first", "second", "third"].iter().enumerate() {
        let (_, sent) = send_text(&server, &alice, &room, &format!("m{i}"), body).await;
        ids.push(sent["event_id"].as_str().unwrap().to_owned());
    }
    let first = &ids[0];
    let send = |kind: &'static str, txn: &'static str, content: Value| {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}");
        let server = &server;
        let alice = alice.clone();
        async move { server.put(&path, Some(&alice), content).await }
    };
    let (status, _) = send(
        "m.reaction",
        "r1",
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": first, "key": "👍" } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let edit = json!({
        "msgtype": "m.text", "body": "* first (edited)",
        "m.new_content": { "msgtype": "m.text", "body": "first (edited)" },
        "m.relates_to": { "rel_type": "m.replace", "event_id": first },
    });
    assert_eq!(send("m.room.message", "e1", edit).await.0, StatusCode::OK);
    let reply = json!({ "msgtype": "m.text", "body": "in a thread", "m.relates_to": { "rel_type": "m.thread", "event_id": first } });
    assert_eq!(send("m.room.message", "t1", reply).await.0, StatusCode::OK);

    let relations = |suffix: String| {
        let server = &server;
        let alice = alice.clone();
        let room = room.clone();
        let first = first.clone();
        async move {
            server
                .get(&format!("/_matrix/client/v1/rooms/{room}/relations/{first}{suffix}"), Some(&alice))
                .await
        }
    };
    let (status, all) = relations(String::new()).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let kinds: Vec<&str> = all["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["m.relates_to"]["rel_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["m.thread", "m.replace", "m.annotation"], "newest first");
    let (_, reactions) = relations("/m.annotation".into()).await;
    assert_eq!(reactions["chunk"][0]["content"]["m.relates_to"]["key"], "👍");
    let (_, edits) = relations("/m.replace/m.room.message".into()).await;
    assert_eq!(edits["chunk"].as_array().unwrap().len(), 1);
    let (_, page) = relations("?limit=2".into()).await;
    assert_eq!(page["chunk"].as_array().unwrap().len(), 2);
    let next = page["next_batch"].as_str().expect("a next page");
    let (_, rest) = relations(format!("?limit=2&from={next}")).await;
    assert_eq!(rest["chunk"][0]["content"]["m.relates_to"]["rel_type"], "m.annotation");
    assert!(rest["next_batch"].is_null());

    // Context: the second message between the first and the third.
    let (status, context) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/context/{}?limit=2", ids[1]), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::OK, "{context}");
    assert_eq!(context["event"]["content"]["body"], "second");
    assert_eq!(context["events_before"][0]["content"]["body"], "first");
    assert_eq!(context["events_after"][0]["content"]["body"], "third");
    assert!(context["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));

    // Timestamps: the first event from the beginning of time, the last from far in the future.
    let (status, oldest) = server
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts=0&dir=f"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{oldest}");
    let (_, create) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{}", oldest["event_id"].as_str().unwrap()),
            Some(&alice),
        )
        .await;
    assert_eq!(create["type"], "m.room.create");
    let (_, newest) = server
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts=99999999999999&dir=b"),
            Some(&alice),
        )
        .await;
    let (_, last) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{}", newest["event_id"].as_str().unwrap()),
            Some(&alice),
        )
        .await;
    assert_eq!(last["content"]["body"], "in a thread");

    // Knocking: bob asks to join; alice sees the knock and lets him in.
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/knock/{room}"), Some(&bob), json!({ "reason": "hi" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, members) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/members?membership=knock"), Some(&alice))
        .await;
    assert_eq!(members["chunk"][0]["state_key"], "@bob:localhost");
    let (status, _) = room_post(&server, &alice, &room, "invite", json!({ "user_id": "@bob:localhost" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(room_post(&server, &bob, &room, "join", json!({})).await.0, StatusCode::OK);
}

#[tokio::test]
async fn communities_spaces_and_the_room_admin_cli() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;

    let (output, created) = server.admin(&[
        "community",
        "create",
        "Hearth Friends",
        "--channels",
        "general,random",
        "--owner",
        "alice",
    ]);
    assert!(output.status.success(), "{output:?}");
    let space = created["details"]["space"].as_str().unwrap().to_owned();
    let general = created["details"]["channels"][0]["room_id"].as_str().unwrap().to_owned();
    let random = created["details"]["channels"][1]["room_id"].as_str().unwrap().to_owned();

    // The space lists its channels, as Element's space bar shows them.
    let (status, hierarchy) = server
        .get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::OK, "{hierarchy}");
    let rooms = hierarchy["rooms"].as_array().unwrap();
    assert_eq!(rooms[0]["room_type"], "m.space");
    assert_eq!(rooms[0]["name"], "Hearth Friends");
    assert_eq!(rooms[0]["children_state"].as_array().unwrap().len(), 2);
    let names: Vec<&str> = rooms[1..].iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["general", "random"]);
    assert_error(
        &server.get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"), Some(&bob)).await,
        403,
        "M_FORBIDDEN",
    );

    // Invited to the space, bob may join its channels without another invite.
    assert_error(&join(&server, &bob, &general).await, 403, "M_FORBIDDEN");
    let (status, _) = room_post(&server, &alice, &space, "invite", json!({ "user_id": "@bob:localhost" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(join(&server, &bob, &space).await.0, StatusCode::OK);
    let (status, body) = join(&server, &bob, &general).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The admin CLI lists and shows rooms, and promotes bob so he may rename the channel.
    let (output, listed) = server.admin(&["room", "list"]);
    assert!(output.status.success());
    assert_eq!(listed["rooms"].as_array().unwrap().len(), 3);
    let (_, shown) = server.admin(&["room", "show", &general]);
    assert_eq!(shown["details"]["members"]["@bob:localhost"]["membership"], "join");
    let name_path = format!("/_matrix/client/v3/rooms/{general}/state/m.room.name");
    assert_error(
        &server.put(&name_path, Some(&bob), json!({ "name": "lobby" })).await,
        403,
        "M_FORBIDDEN",
    );
    let (output, _) = server.admin(&["room", "promote", &general, "bob"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        server.put(&name_path, Some(&bob), json!({ "name": "lobby" })).await.0,
        StatusCode::OK
    );

    // Deleting a channel removes it from the server and from the space's listing.
    let (output, _) = server.admin(&["room", "delete", &random]);
    assert!(output.status.success(), "{output:?}");
    let (_, listed) = server.admin(&["room", "list"]);
    assert_eq!(listed["rooms"].as_array().unwrap().len(), 2);
    let (_, hierarchy) = server
        .get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"), Some(&alice))
        .await;
    assert_eq!(hierarchy["rooms"].as_array().unwrap().len(), 2);
    assert_error(
        &server
            .get(&format!("/_matrix/client/v3/rooms/{random}/messages?dir=b"), Some(&alice))
            .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn events_are_hashed_and_signed_pdus_of_their_room_version() {
    use ruma::RoomVersionId;
    use ruma::canonical_json::CanonicalJsonObject;
    use ruma::signatures::{PublicKeyMap, Verified, reference_hash, verify_event};

    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (_, keys) = server.get("/_matrix/key/v2/server", None).await;
    let mut public_keys = std::collections::BTreeMap::new();
    for (key_id, key) in keys["verify_keys"].as_object().unwrap() {
        public_keys.insert(key_id.clone(), ruma::serde::Base64::parse(key["key"].as_str().unwrap()).unwrap());
    }
    let key_map: PublicKeyMap = [("localhost".to_owned(), public_keys)].into();

    for (version, room_version) in [("10", RoomVersionId::V10), ("11", RoomVersionId::V11), ("12", RoomVersionId::V12)] {
        let rules = room_version.rules().unwrap();
        let room = create_room(&server, &alice, json!({ "room_version": version, "name": "Signed" })).await;
        let (_, sent) = send_text(&server, &alice, &room, "s1", "signed and sealed").await;
        let (_, create) = server
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/state/m.room.create?format=event"),
                Some(&alice),
            )
            .await;
        for event_id in [sent["event_id"].as_str().unwrap(), create["event_id"].as_str().unwrap()] {
            let (output, shown) = server.admin(&["room", "event", event_id]);
            assert!(output.status.success(), "{output:?}");
            let pdu: CanonicalJsonObject = serde_json::from_value(shown["details"]["pdu"].clone()).unwrap();
            assert!(
                matches!(verify_event(&key_map, &pdu, &rules), Ok(Verified::All)),
                "v{version} {event_id}: hash and signature"
            );
            let hash = reference_hash(&pdu, &rules).unwrap();
            assert_eq!(format!("${hash}"), event_id, "v{version}: the event ID is the reference hash");
            if event_id == create["event_id"].as_str().unwrap() && version == "12" {
                assert_eq!(format!("!{hash}"), room, "v12: the room ID is the create event's reference hash");
                assert!(!pdu.contains_key("room_id"));
            }
        }
    }
}

#[tokio::test]
async fn upgrades_and_the_user_directory() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let (_dave, _) = server.register("dave", "davepass1").await;
    let old = create_room(
        &server,
        &alice,
        json!({ "room_version": "10", "name": "Club", "room_alias_name": "club", "preset": "public_chat", "visibility": "public" }),
    )
    .await;
    assert_eq!(join(&server, &bob, &old).await.0, StatusCode::OK);
    let (status, _) = room_post(&server, &alice, &old, "ban", json!({ "user_id": "@dave:localhost" })).await;
    assert_eq!(status, StatusCode::OK);

    let upgrade_path = format!("/_matrix/client/v3/rooms/{old}/upgrade");
    assert_error(
        &server.post(&upgrade_path, Some(&bob), json!({ "new_version": "12" })).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.post(&upgrade_path, Some(&alice), json!({ "new_version": "99" })).await,
        400,
        "M_UNSUPPORTED_ROOM_VERSION",
    );
    let (status, upgraded) = server.post(&upgrade_path, Some(&alice), json!({ "new_version": "12" })).await;
    assert_eq!(status, StatusCode::OK, "{upgraded}");
    let new = upgraded["replacement_room"].as_str().unwrap();

    let (_, tombstone) = server
        .get(&format!("/_matrix/client/v3/rooms/{old}/state/m.room.tombstone"), Some(&bob))
        .await;
    assert_eq!(tombstone["replacement_room"], new);
    assert_error(&send_text(&server, &bob, &old, "late", "anyone here?").await, 403, "M_FORBIDDEN");
    let (_, create) = server
        .get(&format!("/_matrix/client/v3/rooms/{new}/state/m.room.create"), Some(&alice))
        .await;
    assert_eq!(create["predecessor"]["room_id"], old.as_str());
    let (_, name) = server
        .get(&format!("/_matrix/client/v3/rooms/{new}/state/m.room.name"), Some(&alice))
        .await;
    assert_eq!(name["name"], "Club");
    let (_, alias) = server.get("/_matrix/client/v3/directory/room/%23club:localhost", None).await;
    assert_eq!(alias["room_id"], new);
    let (_, banned) = server
        .get(&format!("/_matrix/client/v3/rooms/{new}/members?membership=ban"), Some(&alice))
        .await;
    assert_eq!(banned["chunk"][0]["state_key"], "@dave:localhost");
    assert_eq!(join(&server, &bob, new).await.0, StatusCode::OK);

    // The user directory finds people one shares a room with, by ID or display name.
    server
        .put(
            "/_matrix/client/v3/profile/@bob:localhost/displayname",
            Some(&bob),
            json!({ "displayname": "Robert" }),
        )
        .await;
    let search = |term: &'static str| {
        let server = &server;
        let alice = alice.clone();
        async move {
            let (status, found) = server
                .post(
                    "/_matrix/client/v3/user_directory/search",
                    Some(&alice),
                    json!({ "search_term": term }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{found}");
            found["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["user_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("bob").await, vec!["@bob:localhost"]);
    assert_eq!(search("rob").await, vec!["@bob:localhost"]);
    assert!(search("dave").await.is_empty(), "dave shares no room with alice");
}

#[tokio::test]
async fn joined_history_visibility_hides_what_came_before_the_join() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let room = create_room(
        &server,
        &alice,
        json!({ "preset": "public_chat", "initial_state": [{ "type": "m.room.history_visibility", "content": { "history_visibility": "joined" } }] }),
    )
    .await;
    let (_, before) = send_text(&server, &alice, &room, "b", "before bob").await;
    assert_eq!(join(&server, &bob, &room).await.0, StatusCode::OK);
    send_text(&server, &alice, &room, "a", "after bob").await;

    let (_, page) = messages(&server, &bob, &room, "dir=b&limit=100").await;
    let bodies = message_bodies(&page["chunk"]);
    assert_eq!(bodies, vec!["after bob"]);
    let before_path = format!("/_matrix/client/v3/rooms/{room}/event/{}", before["event_id"].as_str().unwrap());
    assert_error(&server.get(&before_path, Some(&bob)).await, 404, "M_NOT_FOUND");
    assert_eq!(server.get(&before_path, Some(&alice)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn state_changes_carry_what_they_replaced() {
    let mut server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let room = create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    let (_, first) = server.put(&topic, Some(&alice), json!({ "topic": "first" })).await;
    server.put(&topic, Some(&alice), json!({ "topic": "second" })).await;
    assert_eq!(join(&server, &bob, &room).await.0, StatusCode::OK);
    let bob_member = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@bob:localhost");
    server
        .put(&bob_member, Some(&bob), json!({ "membership": "join", "displayname": "Bob" }))
        .await;

    // Read from the store again, not from what the server kept since writing them.
    server.restart().await;
    let (_, page) = messages(&server, &bob, &room, "dir=b&limit=100").await;
    let of_type = |kind: &str| -> Vec<Value> {
        page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["type"] == kind)
            .cloned()
            .collect()
    };
    let topics = of_type("m.room.topic");
    assert_eq!(topics.len(), 2, "{page}");
    assert_eq!(topics[0]["unsigned"]["prev_content"], json!({ "topic": "first" }));
    assert_eq!(topics[0]["unsigned"]["replaces_state"], first["event_id"]);
    assert!(topics[1]["unsigned"].get("prev_content").is_none(), "{}", topics[1]);
    let bobs: Vec<Value> = of_type("m.room.member")
        .into_iter()
        .filter(|event| event["state_key"] == "@bob:localhost")
        .collect();
    assert_eq!(bobs[0]["content"]["displayname"], "Bob");
    assert_eq!(bobs[0]["unsigned"]["prev_content"]["membership"], "join");
    assert!(bobs[1]["unsigned"].get("prev_content").is_none(), "{}", bobs[1]);

    // So does a first sync's state (before a timeline of one event).
    let filter = r#"{"room":{"timeline":{"limit":1}}}"#;
    let (_, sync) = server.get(&format!("/_matrix/client/v3/sync?filter={filter}"), Some(&bob)).await;
    let state = sync["rooms"]["join"][&room]["state"]["events"].as_array().unwrap();
    let current_topic = state.iter().find(|event| event["type"] == "m.room.topic").unwrap();
    assert_eq!(current_topic["unsigned"]["prev_content"], json!({ "topic": "first" }));
}

#[tokio::test]
async fn identical_rooms_created_at_once_get_distinct_ids() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let creations = (0..20).map(|_| server.post("/_matrix/client/v3/createRoom", Some(&alice), json!({})));
    let created = futures_util::future::join_all(creations).await;
    let mut ids: Vec<String> = created
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["room_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
}

#[tokio::test]
async fn mutual_rooms_and_the_support_well_known() {
    let server = TestServer::start(&[
        ("HEARTH_WELL_KNOWN__SUPPORT_PAGE", "https://example.org/help"),
        (
            "HEARTH_WELL_KNOWN__SUPPORT_CONTACTS",
            r#"[{ role = "m.role.admin", matrix_id = "@admin:localhost", email_address = "admin@example.org" }]"#,
        ),
    ])
    .await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let mut shared = Vec::new();
    for preset in ["public_chat", "public_chat", "private_chat"] {
        let (_, created) = server
            .post("/_matrix/client/v3/createRoom", Some(&alice), json!({ "preset": preset }))
            .await;
        shared.push(created["room_id"].as_str().unwrap().to_owned());
    }
    // Bob joins the two public rooms only.
    for room in &shared[..2] {
        let (status, _) = server.post(&format!("/_matrix/client/v3/join/{room}"), Some(&bob), json!({})).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, mutual) = server
        .get("/_matrix/client/v1/mutual_rooms?user_id=@bob:localhost", Some(&alice))
        .await;
    assert_eq!(status, StatusCode::OK, "{mutual}");
    let mut expected = shared[..2].to_vec();
    expected.sort();
    assert_eq!(mutual["joined"], json!(expected));
    assert_eq!(mutual["count"], 2);
    assert!(mutual["next_batch"].is_null());
    assert_error(
        &server
            .get("/_matrix/client/v1/mutual_rooms?user_id=@alice:localhost", Some(&alice))
            .await,
        400,
        "M_INVALID_PARAM",
    );

    let (status, support) = server.get("/.well-known/matrix/support", None).await;
    assert_eq!(status, StatusCode::OK, "{support}");
    assert_eq!(support["support_page"], "https://example.org/help");
    assert_eq!(
        support["contacts"],
        json!([{ "role": "m.role.admin", "matrix_id": "@admin:localhost", "email_address": "admin@example.org" }])
    );
    let plain = TestServer::start(&[]).await;
    assert_error(&plain.get("/.well-known/matrix/support", None).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn third_party_lookups_find_nothing_without_bridges() {
    let server = TestServer::start(&[]).await;
    let (token, _) = server.register("alice", "password").await;
    let (status, protocols) = server.get("/_matrix/client/v3/thirdparty/protocols", Some(&token)).await;
    assert_eq!((status, protocols), (StatusCode::OK, json!({})));
    assert_error(
        &server.get("/_matrix/client/v3/thirdparty/protocol/irc", Some(&token)).await,
        404,
        "M_NOT_FOUND",
    );
    for path in [
        "/_matrix/client/v3/thirdparty/location/irc?server=irc.libera.chat",
        "/_matrix/client/v3/thirdparty/user/irc?nick=alice",
        "/_matrix/client/v3/thirdparty/location?alias=%23irc_hearth:localhost",
        "/_matrix/client/v3/thirdparty/user?userid=@irc_alice:localhost",
    ] {
        let (status, found) = server.get(path, Some(&token)).await;
        assert_eq!((status, found), (StatusCode::OK, json!([])), "{path}");
    }
    assert_eq!(
        server.get("/_matrix/client/v3/thirdparty/protocols", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}
