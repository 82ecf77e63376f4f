//! A real client's view: `matrix-sdk` registers, logs in, asks who it is, edits its profile,
//! lists devices and logs out.

use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::account::register::v3::Request as RegisterRequest;
use matrix_sdk::ruma::api::client::uiaa::{AuthData, Dummy};

use crate::common::TestServer;

async fn client(server: &TestServer) -> Client {
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
