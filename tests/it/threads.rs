//! Threads and bundled aggregations: `GET /rooms/{id}/threads` and `unsigned.m.relations`
//! (thread summaries, latest edits, references) on events wherever they are served.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

fn in_thread(root: &str, body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body, "m.relates_to": { "rel_type": "m.thread", "event_id": root, "is_falling_back": true } })
}

fn edit_of(original: &str, body: &str) -> Value {
    json!({
        "msgtype": "m.text", "body": format!("* {body}"),
        "m.new_content": { "msgtype": "m.text", "body": body },
        "m.relates_to": { "rel_type": "m.replace", "event_id": original },
    })
}

/// The bodies of a `/threads` page's roots, and its `next_batch`.
async fn threads(server: &TestServer, token: &str, room: &str, query: &str) -> (Vec<Value>, Option<String>) {
    let (status, page) = server
        .get(&format!("/_matrix/client/v1/rooms/{room}/threads{query}"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    (
        page["chunk"].as_array().unwrap().clone(),
        page["next_batch"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn threads_list_by_latest_reply_and_events_carry_their_aggregations() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;

    let first_root = server.send(&alice, &room, "m.room.message", text("first topic")).await;
    let second_root = server.send(&alice, &room, "m.room.message", text("second topic")).await;
    // Served before anything relates to them, so what is kept of them must change after.
    let (status, _) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::OK);
    server
        .send(&bob, &room, "m.room.message", in_thread(&first_root, "bob's reply"))
        .await;
    let alice_reply = server
        .send(&alice, &room, "m.room.message", in_thread(&second_root, "alice's reply"))
        .await;
    let bob_latest = server
        .send(&bob, &room, "m.room.message", in_thread(&first_root, "bob again"))
        .await;
    server
        .send(&bob, &room, "m.room.message", edit_of(&bob_latest, "bob again, edited"))
        .await;
    let edit = server
        .send(&alice, &room, "m.room.message", edit_of(&first_root, "first topic, edited"))
        .await;
    // An edit by someone else is not the original's edit.
    server
        .send(&bob, &room, "m.room.message", edit_of(&first_root, "bob's hijack"))
        .await;
    let reference = server
        .send(
            &bob,
            &room,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": "see above", "m.relates_to": { "rel_type": "m.reference", "event_id": second_root } }),
        )
        .await;

    // Both threads, the one replied to last first, each with its summary.
    let (chunk, next) = threads(&server, &bob, &room, "").await;
    assert!(next.is_none());
    let roots: Vec<&str> = chunk.iter().map(|root| root["event_id"].as_str().unwrap()).collect();
    assert_eq!(roots, [first_root.as_str(), second_root.as_str()]);
    let summary = &chunk[0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 2, "{summary}");
    assert_eq!(summary["current_user_participated"], true);
    assert_eq!(summary["latest_event"]["event_id"], bob_latest.as_str());
    assert_eq!(
        summary["latest_event"]["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]["body"], "bob again, edited",
        "the latest reply comes with its edit"
    );
    assert_eq!(chunk[0]["unsigned"]["m.relations"]["m.replace"]["event_id"], edit.as_str());
    assert_eq!(chunk[1]["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], false);
    assert_eq!(
        chunk[1]["unsigned"]["m.relations"]["m.reference"],
        json!({ "chunk": [{ "event_id": reference }] })
    );

    // Paging, and the threads someone took part in.
    let (page, next) = threads(&server, &bob, &room, "?limit=1").await;
    assert_eq!(page[0]["event_id"], first_root.as_str());
    let (rest, last) = threads(&server, &bob, &room, &format!("?limit=1&from={}", next.expect("a next page"))).await;
    assert_eq!(rest[0]["event_id"], second_root.as_str());
    assert!(last.is_none());
    let (mine, _) = threads(&server, &bob, &room, "?include=participated").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["event_id"], first_root.as_str());
    let (alices, _) = threads(&server, &alice, &room, "?include=participated").await;
    assert_eq!(alices.len(), 2, "alice wrote both roots");

    // The same aggregations on the root wherever it is served.
    let (_, event) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{first_root}"), Some(&bob))
        .await;
    assert_eq!(event["unsigned"]["m.relations"]["m.thread"]["count"], 2, "/event: {event}");
    let (_, messages) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), Some(&bob))
        .await;
    let served = |events: &Value| {
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|event| event["event_id"] == first_root.as_str())
            .map(|event| event["unsigned"]["m.relations"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(served(&messages["chunk"])["m.replace"]["event_id"], edit.as_str(), "/messages");
    let (_, context) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/context/{second_root}?limit=4"),
            Some(&bob),
        )
        .await;
    assert_eq!(served(&context["events_before"])["m.thread"]["count"], 2, "/context: {context}");
    let (_, sync) = server
        .get(r#"/_matrix/client/v3/sync?filter={"room":{"timeline":{"limit":50}}}"#, Some(&bob))
        .await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(
        served(timeline)["m.thread"]["latest_event"]["event_id"],
        bob_latest.as_str(),
        "/sync"
    );
    let (_, sliding) = server
        .post(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
            Some(&bob),
            json!({ "lists": { "all": { "ranges": [[0, 10]], "timeline_limit": 50 } } }),
        )
        .await;
    assert_eq!(
        served(&sliding["rooms"][&room]["timeline"])["m.replace"]["event_id"],
        edit.as_str(),
        "sliding sync"
    );
    let (_, relations) = server
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/relations/{first_root}/m.thread"),
            Some(&bob),
        )
        .await;
    assert!(served(&relations["chunk"]).is_null());
    let latest_served = relations["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == bob_latest.as_str())
        .unwrap();
    assert_eq!(
        latest_served["unsigned"]["m.relations"]["m.replace"]["content"]["body"], "* bob again, edited",
        "/relations"
    );

    // Redacting the edit and a reply takes them out of the aggregations.
    for (txn, target) in [&edit, &alice_reply].into_iter().enumerate() {
        let (status, _) = server
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/redact/{target}/r{txn}"),
                Some(&alice),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, event) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{first_root}"), Some(&bob))
        .await;
    assert!(event["unsigned"]["m.relations"]["m.replace"].is_null(), "{event}");
    let (_, second) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{second_root}"), Some(&bob))
        .await;
    assert!(second["unsigned"]["m.relations"]["m.thread"].is_null(), "{second}");
}
