//! Moderation for a group: reports to the server's admins (`/report` endpoints, `hearth admin
//! report`), and accounts suspended or locked by an admin (the spec's admin endpoints and
//! `hearth admin user suspend|lock|unlock`).

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestServer, assert_error};

/// A server with alice (the first account, so a server admin), bob in her public room, and
/// carol outside it: (server, their access tokens, the room).
async fn alice_bob_and_carol() -> (TestServer, String, String, String, String) {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let (carol, _) = server.register("carol", "carolpass").await;
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    (server, alice, bob, carol, room)
}

#[tokio::test]
async fn users_report_events_rooms_and_users_and_admins_resolve_them() {
    let (server, alice, bob, carol, room) = alice_bob_and_carol().await;
    let rude = server
        .send(
            &alice,
            &room,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": "something rude" }),
        )
        .await;

    let report_event = format!("/_matrix/client/v3/rooms/{room}/report/{rude}");
    let (status, body) = server
        .post(&report_event, Some(&bob), json!({ "reason": "rude", "score": -100 }))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_error(
        &server.post(&report_event, Some(&carol), json!({ "reason": "?" })).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .post(&format!("/_matrix/client/v3/rooms/{room}/report/$nope"), Some(&bob), json!({}))
            .await,
        404,
        "M_NOT_FOUND",
    );
    let report = |path: String, reason: &'static str| {
        let (server, carol) = (&server, carol.clone());
        async move { server.post(&path, Some(&carol), json!({ "reason": reason })).await }
    };
    assert_eq!(
        report(format!("/_matrix/client/v3/rooms/{room}/report"), "a bad room").await.0,
        StatusCode::OK
    );
    assert_error(
        &report("/_matrix/client/v3/rooms/!unknown:localhost/report".into(), "x").await,
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(
        report("/_matrix/client/v3/users/@alice:localhost/report".into(), "").await.0,
        StatusCode::OK
    );
    assert_error(
        &report("/_matrix/client/v3/users/@nobody:localhost/report".into(), "x").await,
        404,
        "M_NOT_FOUND",
    );

    let (output, listed) = server.admin(&["report", "list"]);
    assert!(output.status.success(), "{output:?}");
    let reports = listed["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 3, "{listed}");
    assert_eq!(
        reports[0]["target"],
        json!({ "kind": "event", "room_id": room, "event_id": rude, "sender": "@alice:localhost" })
    );
    assert_eq!(reports[0]["reason"], "rude");
    assert_eq!(reports[1]["target"]["kind"], "room");
    assert!(reports[2]["reason"].is_null(), "a blank reason is none");
    let first = reports[0]["id"].as_u64().unwrap().to_string();
    assert!(server.admin(&["report", "resolve", &first]).0.status.success());
    assert_eq!(server.admin(&["report", "list"]).1["reports"].as_array().unwrap().len(), 2);
    assert_eq!(server.admin(&["report", "list", "--all"]).1["reports"].as_array().unwrap().len(), 3);
    assert_eq!(server.admin(&["report", "resolve", "999"]).0.status.code(), Some(1));
    let table = server.command().args(["admin", "report", "list", "--all"]).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("by @alice:localhost"));
}

#[tokio::test]
async fn suspended_users_read_but_do_not_send_and_locked_users_only_log_out() {
    let (server, alice, bob, carol, room) = alice_bob_and_carol().await;

    // Only server admins (alice, the first account) restrict accounts.
    let suspend_bob = "/_matrix/client/v1/admin/suspend/@bob:localhost";
    assert_error(
        &server.put(suspend_bob, Some(&carol), json!({ "suspended": true })).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.get("/_matrix/client/v1/admin/suspend/@nobody:localhost", Some(&alice)).await,
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(server.get(suspend_bob, Some(&alice)).await.1, json!({ "suspended": false }));
    assert_eq!(
        server.put(suspend_bob, Some(&alice), json!({ "suspended": true })).await.1,
        json!({ "suspended": true })
    );
    assert_eq!(server.get(suspend_bob, Some(&alice)).await.1, json!({ "suspended": true }));

    // Suspended: reads, but does not send, join, create rooms or change the profile.
    let send = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/s1");
    assert_error(
        &server.put(&send, Some(&bob), json!({ "msgtype": "m.text", "body": "hi" })).await,
        403,
        "M_USER_SUSPENDED",
    );
    assert_error(
        &server.post("/_matrix/client/v3/createRoom", Some(&bob), json!({})).await,
        403,
        "M_USER_SUSPENDED",
    );
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/profile/@bob:localhost/displayname",
                Some(&bob),
                json!({ "displayname": "B" }),
            )
            .await,
        403,
        "M_USER_SUSPENDED",
    );
    let (status, _) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (output, _) = server.admin(&["user", "unlock", "bob"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        server.put(&send, Some(&bob), json!({ "msgtype": "m.text", "body": "hi" })).await.0,
        StatusCode::OK
    );

    // Locked: every request answers M_USER_LOCKED with soft_logout, but logging out works.
    assert!(server.admin(&["user", "lock", "carol"]).0.status.success());
    assert_eq!(
        server.get("/_matrix/client/v1/admin/lock/@carol:localhost", Some(&alice)).await.1,
        json!({ "locked": true })
    );
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", Some(&carol)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errcode"], "M_USER_LOCKED");
    assert_eq!(body["soft_logout"], true);
    assert_eq!(
        server.post("/_matrix/client/v3/logout", Some(&carol), json!({})).await.0,
        StatusCode::OK
    );
    assert_error(
        &server
            .put(
                "/_matrix/client/v1/admin/lock/@alice:localhost",
                Some(&alice),
                json!({ "locked": true }),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );
    let unlock = server
        .put(
            "/_matrix/client/v1/admin/lock/@carol:localhost",
            Some(&alice),
            json!({ "locked": false }),
        )
        .await;
    assert_eq!(unlock.1, json!({ "locked": false }));
    assert_eq!(server.login("carol", "carolpass").await.0, StatusCode::OK);
}
