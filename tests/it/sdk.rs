//! A real client's view: `matrix-sdk` registers, logs in, asks who it is, edits its profile,
//! lists devices and logs out.

use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::account::register::v3::Request as RegisterRequest;
use matrix_sdk::ruma::api::client::uiaa::{AuthData, Dummy};

use crate::common::TestServer;

/// A `matrix-sdk` client of the test server, not logged in.
pub async fn client(server: &TestServer) -> Client {
    Client::builder()
        .homeserver_url(&server.base_url)
        .build()
        .await
        .expect("client builds")
}

#[tokio::test]
async fn matrix_sdk_register_login_profile_logout() {
    let server = TestServer::start(&[]).await;

    let alice = client(&server).await;
    let mut request = RegisterRequest::new();
    request.username = Some("alice".into());
    request.password = Some("correct horse".into());
    request.auth = Some(AuthData::Dummy(Dummy::new()));
    let registered = alice.matrix_auth().register(request).await.expect("registration succeeds");
    assert_eq!(registered.user_id, "@alice:localhost");
    let whoami = alice.whoami().await.expect("whoami after registration");
    assert_eq!(whoami.user_id, "@alice:localhost");

    // A second client logs in with the password.
    let laptop = client(&server).await;
    let login = laptop
        .matrix_auth()
        .login_username("alice", "correct horse")
        .initial_device_display_name("Alice's laptop")
        .send()
        .await
        .expect("login succeeds");
    assert_eq!(login.user_id, "@alice:localhost");
    let whoami = laptop.whoami().await.unwrap();
    assert_eq!(whoami.device_id.as_deref(), Some(login.device_id.as_ref()));

    // Profile: the display name starts as the localpart and can be changed.
    let account = laptop.account();
    assert_eq!(account.get_display_name().await.unwrap().as_deref(), Some("alice"));
    account.set_display_name(Some("Alice Liddell")).await.expect("set display name");
    assert_eq!(account.get_display_name().await.unwrap().as_deref(), Some("Alice Liddell"));
    let avatar = matrix_sdk::ruma::OwnedMxcUri::from("mxc://localhost/abcdef");
    account.set_avatar_url(Some(&avatar)).await.expect("set avatar");
    assert_eq!(account.get_avatar_url().await.unwrap(), Some(avatar));
    let profile = alice.account().fetch_user_profile().await.unwrap();
    assert_eq!(profile.get("displayname").and_then(|v| v.as_str()), Some("Alice Liddell"));

    // Both sessions are devices; the laptop has its display name.
    let devices = laptop.devices().await.unwrap().devices;
    assert_eq!(devices.len(), 2);
    let named = devices.iter().find(|d| d.device_id == login.device_id).unwrap();
    assert_eq!(named.display_name.as_deref(), Some("Alice's laptop"));

    // Logging out ends that session only.
    laptop.matrix_auth().logout().await.expect("logout");
    assert!(laptop.whoami().await.is_err());
    assert!(alice.whoami().await.is_ok());
    assert_eq!(alice.devices().await.unwrap().devices.len(), 1);
}

/// A logged-in `matrix-sdk` client for a freshly registered user.
pub async fn user(server: &TestServer, name: &str) -> Client {
    server.register(name, "correct horse").await;
    let client = client(server).await;
    client
        .matrix_auth()
        .login_username(name, "correct horse")
        .send()
        .await
        .expect("login succeeds");
    client
}

#[tokio::test]
async fn matrix_sdk_rooms_invite_join_chat_promote_and_history() {
    use matrix_sdk::room::MessagesOptions;
    use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
    use matrix_sdk::ruma::api::client::state::get_state_event_for_key;
    use matrix_sdk::ruma::events::StateEventType;
    use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
    use matrix_sdk::ruma::user_id;

    let server = TestServer::start(&[]).await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;

    let mut request = CreateRoomRequest::new();
    request.name = Some("Book club".into());
    request.invite = vec![user_id!("@bob:localhost").to_owned()];
    let room = alice.create_room(request).await.expect("room created");
    let bobs_room = bob.join_room_by_id(room.room_id()).await.expect("bob joins");

    bobs_room
        .send(RoomMessageEventContent::text_plain("hello alice"))
        .await
        .expect("bob sends");
    room.send(RoomMessageEventContent::text_plain("hello bob"))
        .await
        .expect("alice sends");

    // Bob may not rename the room until alice makes him an admin.
    assert!(bobs_room.set_name("Bob's club".into()).await.is_err());
    // The SDK's own power-level helpers read the state that /sync brings; fetch it instead.
    let request = get_state_event_for_key::v3::Request::new(room.room_id().to_owned(), StateEventType::RoomPowerLevels, String::new());
    let current = alice.send(request).await.expect("power levels");
    let mut levels: serde_json::Value = serde_json::from_str(current.event_or_content.get()).unwrap();
    levels["users"]["@bob:localhost"] = serde_json::json!(100);
    room.send_state_event_raw("m.room.power_levels", "", levels)
        .await
        .expect("promotion");
    bobs_room.set_name("Bob's club".into()).await.expect("an admin renames");

    let messages = room.messages(MessagesOptions::backward()).await.expect("history");
    let texts: Vec<(String, u64)> = messages
        .chunk
        .iter()
        .filter_map(|event| {
            let content: serde_json::Value = event.raw().get_field("content").ok()??;
            let timestamp: u64 = event.raw().get_field("origin_server_ts").ok()??;
            Some((content.get("body")?.as_str()?.to_owned(), timestamp))
        })
        .collect();
    assert_eq!(
        texts.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(),
        vec!["hello bob", "hello alice"]
    );
    assert!(texts[0].1 >= texts[1].1 && texts[1].1 > 0, "timestamps present and ordered");
}
