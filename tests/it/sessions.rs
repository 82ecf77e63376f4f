//! Sessions: refresh tokens and expiring access tokens (`access_token_lifetime`), and signing
//! in a new device from a logged-in one (`/login/get_token`, `m.login.token`).

use std::time::Duration;

use matrix_sdk::Client;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error};

const LIFETIME: &str = "2s";

async fn whoami(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server.get("/_matrix/client/v3/account/whoami", Some(token)).await
}

#[tokio::test]
async fn refreshable_sessions_expire_and_refresh_and_others_do_not() {
    let server = TestServer::start(&[("HEARTH_ACCESS_TOKEN_LIFETIME", LIFETIME)]).await;
    server.register("alice", "alicepass").await;
    let login = |refresh: bool| {
        let server = &server;
        async move {
            let (status, body) = server
                .post(
                    "/_matrix/client/v3/login",
                    None,
                    json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "alicepass", "refresh_token": refresh }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let refreshable = login(true).await;
    assert_eq!(refreshable["expires_in_ms"], 2000);
    let refresh_token = refreshable["refresh_token"].as_str().expect("a refresh token").to_owned();
    let access = refreshable["access_token"].as_str().unwrap().to_owned();
    let lasting = login(false).await;
    assert!(
        lasting["refresh_token"].is_null() && lasting["expires_in_ms"].is_null(),
        "{lasting}"
    );
    assert_eq!(whoami(&server, &access).await.0, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, expired) = whoami(&server, &access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (expired["errcode"].as_str(), expired["soft_logout"].as_bool()),
        (Some("M_UNKNOWN_TOKEN"), Some(true))
    );
    assert_eq!(
        whoami(&server, lasting["access_token"].as_str().unwrap()).await.0,
        StatusCode::OK,
        "no refresh token, no expiry"
    );

    let (status, refreshed) = server
        .post("/_matrix/client/v3/refresh", None, json!({ "refresh_token": refresh_token }))
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(refreshed["expires_in_ms"], 2000);
    let (_, me) = whoami(&server, refreshed["access_token"].as_str().unwrap()).await;
    assert_eq!(me["device_id"], refreshable["device_id"], "the same device, a new token");
    assert_error(
        &server
            .post("/_matrix/client/v3/refresh", None, json!({ "refresh_token": refresh_token }))
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &server
            .post("/_matrix/client/v3/refresh", None, json!({ "refresh_token": "hthr_x_y" }))
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );

    // Logging out ends the refresh token too.
    let next_refresh = refreshed["refresh_token"].as_str().unwrap();
    let (status, _) = server
        .post(
            "/_matrix/client/v3/logout",
            Some(refreshed["access_token"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server
            .post("/_matrix/client/v3/refresh", None, json!({ "refresh_token": next_refresh }))
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );

    // Registration hands out a refresh token when asked too.
    let (status, registered) = server
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({ "username": "bob", "password": "bobpassword", "auth": { "type": "m.login.dummy" }, "refresh_token": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        registered["refresh_token"].as_str().is_some_and(|token| token.starts_with("hthr_")),
        "{registered}"
    );
}

#[tokio::test]
async fn matrix_sdk_refreshes_expired_tokens_by_itself() {
    let server = TestServer::start(&[("HEARTH_ACCESS_TOKEN_LIFETIME", LIFETIME)]).await;
    server.register("carol", "carolpass").await;
    let client = Client::builder()
        .homeserver_url(&server.base_url)
        .handle_refresh_tokens()
        .build()
        .await
        .unwrap();
    client
        .matrix_auth()
        .login_username("carol", "carolpass")
        .request_refresh_token()
        .send()
        .await
        .expect("login");
    let first = client.access_token().unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(client.whoami().await.expect("whoami after a refresh").user_id, "@carol:localhost");
    assert_ne!(client.access_token().unwrap(), first, "the SDK refreshed its token");
}

#[tokio::test]
async fn a_logged_in_device_signs_in_another_with_a_login_token() {
    let server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (_, types) = server.get("/_matrix/client/v3/login", None).await;
    let token_type = types["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|flow| flow["type"] == "m.login.token")
        .cloned();
    assert_eq!(token_type, Some(json!({ "type": "m.login.token", "get_login_token": true })));
    let (_, capabilities) = server.get("/_matrix/client/v3/capabilities", Some(&alice)).await;
    assert_eq!(capabilities["capabilities"]["m.get_login_token"]["enabled"], true);

    let get_token = "/_matrix/client/v1/login/get_token";
    let (status, challenge) = server.post(get_token, Some(&alice), json!({})).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "user-interactive authentication first: {challenge}"
    );
    let auth = json!({ "auth": { "type": "m.login.password", "session": challenge["session"],
        "identifier": { "type": "m.id.user", "user": "alice" }, "password": "alicepass" } });
    let (status, issued) = server.post(get_token, Some(&alice), auth).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["expires_in_ms"], 120_000);
    let login_token = issued["login_token"].as_str().unwrap();

    let token_login = json!({ "type": "m.login.token", "token": login_token, "initial_device_display_name": "new phone" });
    let (status, logged_in) = server.post("/_matrix/client/v3/login", None, token_login.clone()).await;
    assert_eq!(status, StatusCode::OK, "{logged_in}");
    assert_eq!(logged_in["user_id"], "@alice:localhost");
    assert_eq!(whoami(&server, logged_in["access_token"].as_str().unwrap()).await.0, StatusCode::OK);
    assert_error(
        &server.post("/_matrix/client/v3/login", None, token_login).await,
        403,
        "M_FORBIDDEN",
    );
}
