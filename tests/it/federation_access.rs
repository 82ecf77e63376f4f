//! Who gets in and what is shown across servers: knocks on a room of another server, a space
//! listing a room of another server, a restricted room letting in members of its space from
//! another server (the join vouched for by a resident), and a server ACL shutting a server out.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestServer;
use crate::federation::{TestCa, alice_and_bob, send_text, wait_for_message};

#[tokio::test]
async fn knocking_on_a_room_of_another_server() {
    let ca = TestCa::new();
    let (a, a_name, b, b_name, alice, bob) = alice_and_bob(&ca, &[]).await;
    let (_, created) = a
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "preset": "private_chat", "name": "Knock first",
                    "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }] }),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let (status, knocked) = b
        .post(
            &format!("/_matrix/client/v3/knock/{room}?via={a_name}"),
            Some(&bob),
            json!({ "reason": "let me in" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{knocked}");
    let (_, sync) = b.get("/_matrix/client/v3/sync", Some(&bob)).await;
    let knock_state = &sync["rooms"]["knock"][&room]["knock_state"]["events"];
    assert!(
        knock_state
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["content"]["name"] == "Knock first"),
        "{sync}"
    );
    let (_, members) = a.get(&format!("/_matrix/client/v3/rooms/{room}/members"), Some(&alice)).await;
    let bob_id = format!("@bob:{b_name}");
    let knock = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state_key"] == bob_id.as_str())
        .cloned();
    assert_eq!(knock.map(|e| e["content"]["membership"].clone()), Some(json!("knock")), "{members}");
}

#[tokio::test]
async fn a_space_lists_a_room_of_another_server() {
    let ca = TestCa::new();
    let (a, a_name, b, b_name, alice, bob) = alice_and_bob(&ca, &[]).await;
    let (_, space) = a
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "name": "Guild", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let space = space["room_id"].as_str().unwrap().to_owned();
    let (_, remote) = b
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&bob),
            json!({ "preset": "public_chat", "name": "On B" }),
        )
        .await;
    let remote = remote["room_id"].as_str().unwrap().to_owned();
    let link = json!({ "via": [b_name] });
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{remote}"),
            Some(&alice),
            link,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, hierarchy) = a.get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"), Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{hierarchy}");
    let names: Vec<&str> = hierarchy["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|room| room["name"].as_str())
        .collect();
    assert_eq!(names, ["Guild", "On B"], "{hierarchy} ({a_name})");
}

#[tokio::test]
async fn a_server_acl_shuts_a_server_out() {
    let ca = TestCa::new();
    let (a, a_name) = ca.server(&[]).await;
    let (b, b_name) = ca.server_at("127.0.0.2", &[]).await;
    let (alice, _) = a.register("alice", "alicepass").await;
    let (bob, _) = b.register("bob", "bobpassword").await;
    let (_, created) = a
        .post("/_matrix/client/v3/createRoom", Some(&alice), json!({ "preset": "public_chat" }))
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let (status, _) = b
        .post(&format!("/_matrix/client/v3/join/{room}?via={a_name}"), Some(&bob), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    send_text(&b, &bob, &room, "before the acl").await;
    wait_for_message(&a, &alice, &room, "before the acl").await;

    // Server ACLs match host names, ports aside: B's host is denied.
    let acl = json!({ "allow": ["*"], "deny": ["127.0.0.2"], "allow_ip_literals": true });
    let (status, _) = a
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.server_acl/"),
            Some(&alice),
            acl,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_message(&a, &alice, &room, "before the acl").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    send_text(&b, &bob, &room, "from a denied server").await;
    send_text(&a, &alice, &room, "not for B").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let bodies = async |server: &TestServer, token: &str| {
        let (_, page) = server
            .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10"), Some(token))
            .await;
        crate::common::message_bodies(&page["chunk"])
    };
    assert!(!bodies(&a, &alice).await.contains(&"from a denied server".to_owned()));
    assert!(!bodies(&b, &bob).await.contains(&"not for B".to_owned()), "{b_name} got a message");
}

#[tokio::test]
async fn a_restricted_room_lets_in_members_of_its_space_from_another_server() {
    let ca = TestCa::new();
    let (a, a_name, b, b_name, alice, bob) = alice_and_bob(&ca, &[]).await;
    let create = async |body: serde_json::Value| {
        let (status, created) = a.post("/_matrix/client/v3/createRoom", Some(&alice), body).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        created["room_id"].as_str().unwrap().to_owned()
    };
    let space = create(json!({ "preset": "public_chat", "name": "Guild", "creation_content": { "type": "m.space" } })).await;
    let restricted = create(json!({
        "preset": "private_chat", "name": "Members only",
        "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": {
            "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] } }],
    }))
    .await;
    let join = async |room: &str| {
        b.post(&format!("/_matrix/client/v3/join/{room}?via={a_name}"), Some(&bob), json!({}))
            .await
    };

    // Not in the space yet: refused; in the space: let in, vouched for by Alice's server.
    let (status, refused) = join(&restricted).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, joined) = join(&space).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let (status, joined) = join(&restricted).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let (_, member) = a
        .get(
            &format!("/_matrix/client/v3/rooms/{restricted}/state/m.room.member/@bob:{b_name}"),
            Some(&alice),
        )
        .await;
    assert_eq!(member["membership"], "join");
    assert_eq!(member["join_authorised_via_users_server"], format!("@alice:{a_name}"));
    send_text(&b, &bob, &restricted, "thanks for having me").await;
    wait_for_message(&a, &alice, &restricted, "thanks for having me").await;
}
