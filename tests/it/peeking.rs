//! Peeking: `GET /rooms/{roomId}/initialSync` and `GET /events` into a world-readable room
//! without joining it, and for members.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestServer, assert_error, message_bodies};

#[tokio::test]
async fn world_readable_rooms_can_be_peeked_into_and_followed_without_joining() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let room = server
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "visibility": "public",
                    "initial_state": [{ "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "world_readable" } }] }),
        )
        .await;
    let private = server.create_room(&alice, json!({})).await;
    server
        .send(&alice, &room, "m.room.message", json!({ "msgtype": "m.text", "body": "hello" }))
        .await;
    let tag = format!("/_matrix/client/v3/user/@alice:localhost/rooms/{room}/tags/u.work");
    assert_eq!(server.put(&tag, Some(&alice), json!({ "order": 0.5 })).await.0, StatusCode::OK);

    let (status, peeked) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/initialSync"), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::OK, "{peeked}");
    assert!(peeked["membership"].is_null());
    assert_eq!(peeked["visibility"], "public");
    assert_eq!(message_bodies(&peeked["messages"]["chunk"]), ["hello"]);
    assert!(
        peeked["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["type"] == "m.room.create")
    );
    let (_, own) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/initialSync"), Some(&alice))
        .await;
    assert_eq!(own["membership"], "join");
    assert_eq!(own["account_data"][0]["type"], "m.tag", "{own}");
    assert_error(
        &server
            .get(&format!("/_matrix/client/v3/rooms/{private}/initialSync"), Some(&bob))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .get(&format!("/_matrix/client/v3/events?room_id={private}"), Some(&bob))
            .await,
        403,
        "M_FORBIDDEN",
    );

    // A long poll from the snapshot's end wakes for the next message.
    let end = peeked["messages"]["end"].as_str().unwrap().to_owned();
    let poll = {
        let (server_url, bob, room, end) = (server.base_url.clone(), bob.clone(), room.clone(), end.clone());
        let http = server.http.clone();
        tokio::spawn(async move {
            let url = format!("{server_url}/_matrix/client/v3/events?room_id={room}&from={end}&timeout=20000");
            http.get(url)
                .bearer_auth(bob)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server
        .send(
            &alice,
            &room,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": "are you there?" }),
        )
        .await;
    let woken = tokio::time::timeout(std::time::Duration::from_secs(10), poll)
        .await
        .expect("woken, not timed out")
        .unwrap();
    assert_eq!(message_bodies(&woken["chunk"]), ["are you there?"], "{woken}");
    assert_eq!(woken["start"], end.as_str());
    let next = woken["end"].as_str().unwrap();
    let (status, quiet) = server
        .get(
            &format!("/_matrix/client/v3/events?room_id={room}&from={next}&timeout=50"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(message_bodies(&quiet["chunk"]).is_empty());
    assert_eq!(quiet["end"], next);
}
