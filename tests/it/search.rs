//! `POST /search`: full-text search over the rooms a user is in, kept right as events are
//! sent, redacted and rooms are left.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error};

fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

/// Searches `criteria` (merged into `room_events`) as `token`; returns `room_events`.
async fn search(server: &TestServer, token: &str, criteria: Value, next_batch: Option<&str>) -> Value {
    let path = match next_batch {
        Some(batch) => format!("/_matrix/client/v3/search?next_batch={batch}"),
        None => "/_matrix/client/v3/search".to_owned(),
    };
    let (status, body) = server
        .post(&path, Some(token), json!({ "search_categories": { "room_events": criteria } }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["search_categories"]["room_events"].clone()
}

fn bodies(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .map(|r| r["result"]["content"]["body"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn search_finds_what_the_user_may_read_by_rank_or_recency() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let shared = server
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "name": "Fox Den", "topic": "all about foxes" }),
        )
        .await;
    let private = server.create_room(&alice, json!({})).await;
    let encrypted = server
        .create_room(&alice, json!({ "initial_state": [{ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } }] }))
        .await;
    server.join(&bob, &shared).await;
    server.send(&alice, &shared, "m.room.message", text("The quick brown fox")).await;
    server.send(&bob, &shared, "m.room.message", text("quick, quick thinking")).await;
    let bear = server.send(&alice, &shared, "m.room.message", text("a brown bear")).await;
    server.send(&alice, &private, "m.room.message", text("the secret fox")).await;
    server
        .send(
            &alice,
            &encrypted,
            "m.room.encrypted",
            json!({ "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "fox", "sender_key": "k", "session_id": "s", "device_id": "D" }),
        )
        .await;
    let newest_fox = server.send(&bob, &shared, "m.room.message", text("FOX sighting!")).await;

    // Bob sees only the shared room; words match case-insensitively, every word must match.
    let found = search(&server, &bob, json!({ "search_term": "fox", "keys": ["content.body"] }), None).await;
    assert_eq!(found["count"], 2, "{found}");
    assert_eq!(found["highlights"], json!(["fox"]));
    let mut fox_bodies = bodies(&found);
    fox_bodies.sort();
    assert_eq!(fox_bodies, ["FOX sighting!", "The quick brown fox"]);
    let found = search(&server, &alice, json!({ "search_term": "fox" }), None).await;
    assert_eq!(
        found["count"], 4,
        "alice also has her private room, the room's name matches, the encrypted event is not searchable: {found}"
    );
    assert_eq!(
        bodies(&search(&server, &bob, json!({ "search_term": "quick fox" }), None).await),
        ["The quick brown fox"]
    );
    assert!(bodies(&search(&server, &bob, json!({ "search_term": "quick zebra" }), None).await).is_empty());

    // Rank puts the denser match first; recency the newest.
    let ranked = search(&server, &bob, json!({ "search_term": "quick" }), None).await;
    assert_eq!(bodies(&ranked)[0], "quick, quick thinking");
    assert!(ranked["results"][0]["rank"].as_f64().unwrap() > ranked["results"][1]["rank"].as_f64().unwrap());
    let recent = search(&server, &bob, json!({ "search_term": "fox", "order_by": "recent" }), None).await;
    assert_eq!(bodies(&recent)[0], "FOX sighting!");

    // Paging, in both orders.
    for order in ["recent", "rank"] {
        let criteria = json!({ "search_term": "brown", "order_by": order, "filter": { "limit": 1 } });
        let first = search(&server, &bob, criteria.clone(), None).await;
        assert_eq!(bodies(&first).len(), 1);
        let next = first["next_batch"].as_str().expect("a next page").to_owned();
        let second = search(&server, &bob, criteria, Some(&next)).await;
        assert_eq!(bodies(&second).len(), 1);
        assert_ne!(bodies(&first), bodies(&second), "{order}");
        assert!(second["next_batch"].is_null());
    }

    // Filters, keys, state, groupings, context with profiles.
    let only_bob = search(
        &server,
        &alice,
        json!({ "search_term": "fox", "filter": { "senders": [bob_id(&server, &bob).await] } }),
        None,
    )
    .await;
    assert_eq!(bodies(&only_bob), ["FOX sighting!"]);
    let names = search(&server, &bob, json!({ "search_term": "den", "keys": ["content.name"] }), None).await;
    assert_eq!(names["results"][0]["result"]["type"], "m.room.name", "{names}");
    let topics = search(
        &server,
        &bob,
        json!({ "search_term": "foxes", "keys": ["content.topic"], "include_state": true }),
        None,
    )
    .await;
    assert_eq!(topics["results"][0]["result"]["content"]["topic"], "all about foxes");
    assert!(
        topics["state"][&shared]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["type"] == "m.room.create")
    );
    let grouped = search(
        &server,
        &alice,
        json!({ "search_term": "fox", "keys": ["content.body"], "order_by": "recent", "groupings": { "group_by": [{ "key": "room_id" }, { "key": "sender" }] },
                "event_context": { "before_limit": 1, "after_limit": 1, "include_profile": true } }),
        None,
    )
    .await;
    assert_eq!(
        grouped["groups"]["room_id"][&shared]["results"].as_array().unwrap().len(),
        2,
        "{grouped}"
    );
    assert_eq!(grouped["groups"]["room_id"][&private]["results"].as_array().unwrap().len(), 1);
    assert_eq!(grouped["groups"]["sender"]["@bob:localhost"]["results"], json!([newest_fox]));
    let context = &grouped["results"][0]["context"];
    assert_eq!(context["events_before"][0]["event_id"], bear.as_str(), "{context}");
    assert_eq!(context["profile_info"]["@bob:localhost"]["displayname"], "bob");
    let bad_key = server
        .post(
            "/_matrix/client/v3/search",
            Some(&bob),
            json!({ "search_categories": { "room_events": { "search_term": "x", "keys": ["content.nope"] } } }),
        )
        .await;
    assert_error(&bad_key, 400, "M_INVALID_PARAM");
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/search?next_batch=zzz",
                Some(&bob),
                json!({ "search_categories": { "room_events": { "search_term": "x" } } }),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // A redacted message is no longer found; a room left is no longer searched.
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{shared}/redact/{newest_fox}/r1"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        bodies(&search(&server, &bob, json!({ "search_term": "sighting" }), None).await),
        Vec::<String>::new()
    );
    assert_eq!(
        server
            .post(&format!("/_matrix/client/v3/rooms/{shared}/leave"), Some(&bob), json!({}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(search(&server, &bob, json!({ "search_term": "fox" }), None).await["count"], 0);

    // Rebuilt from scratch, the index finds the same (and still not the redacted message).
    let (output, _) = server.admin(&["room", "reindex"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let found = search(&server, &alice, json!({ "search_term": "fox", "keys": ["content.body"] }), None).await;
    assert_eq!(bodies(&found), ["the secret fox", "The quick brown fox"]);
}

async fn bob_id(server: &TestServer, token: &str) -> String {
    server.get("/_matrix/client/v3/account/whoami", Some(token)).await.1["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}
