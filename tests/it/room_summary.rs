//! `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`: a room previewed before joining, by
//! whoever may preview it.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestServer, assert_error};

#[tokio::test]
async fn room_summaries_show_to_who_may_preview_the_room() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (bob, _) = server.register("bob", "bobpassword").await;
    let public = server
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "name": "Den", "topic": "come in", "room_alias_name": "den" }),
        )
        .await;
    let private = server
        .create_room(&alice, json!({ "preset": "private_chat", "name": "Back room" }))
        .await;
    let summary = |room: String, token: Option<String>| {
        let server = &server;
        async move {
            server
                .get(&format!("/_matrix/client/v1/room_summary/{room}"), token.as_deref())
                .await
        }
    };

    let (status, shown) = summary(public.clone(), Some(bob.clone())).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["room_id"], public.as_str());
    assert_eq!(shown["name"], "Den");
    assert_eq!(shown["topic"], "come in");
    assert_eq!(
        shown["join_rule"].as_str().unwrap_or("public"),
        "public",
        "left out, it means public"
    );
    assert_eq!(shown["num_joined_members"], 1);
    assert_eq!(shown["canonical_alias"], "#den:localhost");
    assert!(shown["membership"].is_null());
    assert_eq!(
        summary("%23den:localhost".into(), Some(bob.clone())).await.1["room_id"],
        public.as_str()
    );
    assert_eq!(
        summary(public.clone(), None).await.0,
        StatusCode::OK,
        "public rooms preview without an account"
    );
    assert_eq!(summary(public.clone(), Some(alice.clone())).await.1["membership"], "join");

    assert_error(&summary(private.clone(), Some(bob.clone())).await, 404, "M_NOT_FOUND");
    assert_error(&summary(private.clone(), None).await, 404, "M_NOT_FOUND");
    assert_error(&summary("!nowhere:localhost".into(), Some(bob.clone())).await, 404, "M_NOT_FOUND");
    let invite = server
        .post(
            &format!("/_matrix/client/v3/rooms/{private}/invite"),
            Some(&alice),
            json!({ "user_id": "@bob:localhost" }),
        )
        .await;
    assert_eq!(invite.0, StatusCode::OK);
    let (status, invited) = summary(private.clone(), Some(bob.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (invited["name"].as_str(), invited["membership"].as_str()),
        (Some("Back room"), Some("invite"))
    );
}
