//! Notifications: push rules and the unread counts they make in `/sync` — per room and per
//! thread, right past many notifications and receipts — `/notifications`, and a push gateway
//! receiving them.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error};
use crate::sync::{alice_and_bob_in_a_public_room, send_message, sync, url_encode};

/// Bob's unread (notification, highlight) counts in `room`, from an initial sync.
async fn unread_of(server: &TestServer, bob: &str, room: &str) -> (u64, u64) {
    let answer = sync(server, bob, None, 0).await;
    let unread = &answer["rooms"]["join"][room]["unread_notifications"];
    (
        unread["notification_count"].as_u64().unwrap(),
        unread["highlight_count"].as_u64().unwrap(),
    )
}

/// Bob's read receipt at `event`, in `thread` (empty: unthreaded).
async fn read_up_to(server: &TestServer, bob: &str, room: &str, event: &str, thread: &str) {
    let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}");
    let body = if thread.is_empty() {
        json!({})
    } else {
        json!({ "thread_id": thread })
    };
    let (status, body) = server.post(&path, Some(bob), body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn unread_counts_stay_right_past_many_notifications_and_receipts() {
    let (mut server, alice, bob, room) = alice_and_bob_in_a_public_room().await;
    // 70 messages, every 7th mentioning Bob: counted past the snapshots, and again from them.
    let mut main = Vec::new();
    for n in 0..70 {
        let mut content = json!({ "msgtype": "m.text", "body": format!("m{n}") });
        if n % 7 == 0 {
            content["m.mentions"] = json!({ "user_ids": ["@bob:localhost"] });
        }
        main.push(send_message(&server, &alice, &room, &format!("m{n}"), content).await);
    }
    assert_eq!(unread_of(&server, &bob, &room).await, (70, 10));
    assert_eq!(unread_of(&server, &bob, &room).await, (70, 10));
    // A receipt in the middle: the snapshot no longer holds, the counts follow the receipt.
    read_up_to(&server, &bob, &room, &main[34], "").await;
    assert_eq!(unread_of(&server, &bob, &room).await, (35, 5));

    // 40 replies in a thread on the first message, then receipts in the thread and the main
    // timeline, each counting only its own.
    let mut replies = Vec::new();
    for n in 0..40 {
        let content = json!({
            "msgtype": "m.text", "body": format!("r{n}"),
            "m.relates_to": { "rel_type": "m.thread", "event_id": main[0] },
        });
        replies.push(send_message(&server, &alice, &room, &format!("r{n}"), content).await);
    }
    assert_eq!(unread_of(&server, &bob, &room).await, (75, 5));
    read_up_to(&server, &bob, &room, &replies[19], &main[0]).await;
    assert_eq!(unread_of(&server, &bob, &room).await, (55, 5));
    read_up_to(&server, &bob, &room, &main[69], "main").await;
    assert_eq!(unread_of(&server, &bob, &room).await, (20, 0));
    read_up_to(&server, &bob, &room, &replies[39], "").await;
    assert_eq!(unread_of(&server, &bob, &room).await, (0, 0));

    // Counts held in memory follow new notifications and a receipt between two syncs, and
    // after a restart (nothing held) the stored snapshots and rows give the same.
    let content = json!({ "msgtype": "m.text", "body": "@bob", "m.mentions": { "user_ids": ["@bob:localhost"] } });
    let ping = send_message(&server, &alice, &room, "ping", content).await;
    assert_eq!(unread_of(&server, &bob, &room).await, (1, 1));
    let content = json!({ "msgtype": "m.text", "body": "again" });
    send_message(&server, &alice, &room, "again", content).await;
    read_up_to(&server, &bob, &room, &ping, "").await;
    assert_eq!(unread_of(&server, &bob, &room).await, (1, 0));
    server.restart().await;
    assert_eq!(unread_of(&server, &bob, &room).await, (1, 0));
}

#[tokio::test]
async fn unread_counts_highlights_push_rules_and_notifications() {
    let (server, alice, bob, room) = alice_and_bob_in_a_public_room().await;

    // Bob's rules start as the spec's defaults, in his account data too.
    let (status, rules) = server.get("/_matrix/client/v3/pushrules/", Some(&bob)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        rules["global"]["override"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule_id"] == ".m.rule.master")
    );
    let first = sync(&server, &bob, None, 0).await;
    assert!(
        first["account_data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.push_rules")
    );
    // He adds a keyword.
    let (status, body) = server
        .put(
            "/_matrix/client/v3/pushrules/global/content/pizza",
            Some(&bob),
            json!({ "pattern": "pizza", "actions": ["notify", { "set_tweak": "highlight" }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, enabled) = server
        .get("/_matrix/client/v3/pushrules/global/content/pizza/enabled", Some(&bob))
        .await;
    assert_eq!(enabled["enabled"], true);

    let send = |txn: &'static str, content: Value| send_message(&server, &alice, &room, txn, content);
    send("1", json!({ "msgtype": "m.text", "body": "hello" })).await;
    send(
        "2",
        json!({ "msgtype": "m.text", "body": "bob: lunch?", "m.mentions": { "user_ids": ["@bob:localhost"] } }),
    )
    .await;
    let last = send("3", json!({ "msgtype": "m.text", "body": "pizza it is" })).await;

    let counts = sync(&server, &bob, None, 0).await;
    let unread = &counts["rooms"]["join"][&room]["unread_notifications"];
    assert_eq!(
        (unread["notification_count"].as_u64(), unread["highlight_count"].as_u64()),
        (Some(3), Some(2)),
        "{unread}"
    );
    let (_, listed) = server.get("/_matrix/client/v3/notifications", Some(&bob)).await;
    let bodies: Vec<&str> = listed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"]["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["pizza it is", "bob: lunch?", "hello"]);
    let (_, highlights) = server.get("/_matrix/client/v3/notifications?only=highlight", Some(&bob)).await;
    assert_eq!(highlights["notifications"].as_array().unwrap().len(), 2);

    // Reading resets the counts.
    let since = counts["next_batch"].as_str().unwrap().to_owned();
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{last}"),
            Some(&bob),
            json!({}),
        )
        .await;
    let read = sync(&server, &bob, Some(&since), 0).await;
    let unread = &read["rooms"]["join"][&room]["unread_notifications"];
    assert_eq!(
        (unread["notification_count"].as_u64(), unread["highlight_count"].as_u64()),
        (Some(0), Some(0)),
        "{read}"
    );

    // Rules can be switched off and removed.
    let (status, _) = server
        .put(
            "/_matrix/client/v3/pushrules/global/content/pizza/enabled",
            Some(&bob),
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .request(
            reqwest::Method::DELETE,
            "/_matrix/client/v3/pushrules/global/content/pizza",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server.get("/_matrix/client/v3/pushrules/global/content/pizza", Some(&bob)).await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn a_push_gateway_receives_the_notification() {
    use axum::routing::post;
    use tokio::sync::mpsc;

    let (received, mut inbox) = mpsc::unbounded_channel::<Value>();
    let gateway = axum::Router::new().route(
        "/_matrix/push/v1/notify",
        post(move |axum::Json(body): axum::Json<Value>| {
            let received = received.clone();
            async move {
                received.send(body).unwrap();
                axum::Json(json!({ "rejected": [] }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, gateway).await.unwrap() });

    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat", "name": "Kitchen" }))
        .await;
    server.join(&bob, &room).await;

    let pusher = |url: &str| {
        json!({
            "kind": "http", "app_id": "org.example.app", "pushkey": "bobs-phone",
            "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
            "data": { "url": url, "format": "event_id_only" },
        })
    };
    assert_error(
        &server
            .post("/_matrix/client/v3/pushers/set", Some(&bob), pusher("http://127.0.0.1:1/elsewhere"))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    let (status, body) = server
        .post("/_matrix/client/v3/pushers/set", Some(&bob), pusher(&gateway_url))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, pushers) = server.get("/_matrix/client/v3/pushers", Some(&bob)).await;
    assert_eq!(pushers["pushers"][0]["pushkey"], "bobs-phone");

    let sent = send_message(&server, &alice, &room, "p1", json!({ "msgtype": "m.text", "body": "dinner!" })).await;
    let notification = tokio::time::timeout(std::time::Duration::from_secs(30), inbox.recv())
        .await
        .expect("the gateway is called")
        .unwrap();
    let notification = &notification["notification"];
    assert_eq!(notification["event_id"], sent.as_str());
    assert_eq!(notification["room_id"], room.as_str());
    assert_eq!(notification["room_name"], "Kitchen");
    assert_eq!(notification["counts"]["unread"], 1);
    assert_eq!(notification["devices"][0]["pushkey"], "bobs-phone");
}

#[tokio::test]
async fn unread_thread_notifications_count_each_thread_apart() {
    let (server, alice, bob, room) = alice_and_bob_in_a_public_room().await;
    let send = |txn: &'static str, content: Value| send_message(&server, &alice, &room, txn, content);
    let root = send("1", json!({ "msgtype": "m.text", "body": "who is in for a hike?" })).await;
    let in_thread = |body: &str| {
        json!({ "msgtype": "m.text", "body": body, "m.mentions": { "user_ids": ["@bob:localhost"] },
                "m.relates_to": { "rel_type": "m.thread", "event_id": root, "is_falling_back": true, "m.in_reply_to": { "event_id": root } } })
    };
    send("2", in_thread("bob: saturday?")).await;
    let last_in_thread = send("3", in_thread("bob: or sunday")).await;
    let counts = |sync: &Value| {
        let room = &sync["rooms"]["join"][&room];
        let main = (
            room["unread_notifications"]["notification_count"].as_u64(),
            room["unread_notifications"]["highlight_count"].as_u64(),
        );
        let thread = &room["unread_thread_notifications"][&root];
        (main, (thread["notification_count"].as_u64(), thread["highlight_count"].as_u64()))
    };
    let thread_aware = r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#;
    let path = format!("/_matrix/client/v3/sync?filter={}", url_encode(thread_aware));
    let (_, split) = server.get(&path, Some(&bob)).await;
    assert_eq!(counts(&split), ((Some(1), Some(0)), (Some(2), Some(2))), "{split}");
    // A client that does not ask gets the room's total and no thread counts.
    let whole = sync(&server, &bob, None, 0).await;
    assert_eq!(counts(&whole), ((Some(3), Some(2)), (None, None)));

    // A receipt in the thread reads the thread only; one on the main timeline the rest.
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{last_in_thread}"),
            Some(&bob),
            json!({ "thread_id": root }),
        )
        .await;
    let (_, split) = server.get(&path, Some(&bob)).await;
    assert_eq!(counts(&split), ((Some(1), Some(0)), (None, None)), "{split}");
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{root}"),
            Some(&bob),
            json!({ "thread_id": "main" }),
        )
        .await;
    let whole = sync(&server, &bob, None, 0).await;
    assert_eq!(counts(&whole).0, (Some(0), Some(0)));
}
