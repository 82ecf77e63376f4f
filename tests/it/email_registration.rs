//! Registering with an email address: `/register/email/requestToken`, the mailed link, and
//! the `m.login.email.identity` stage of `/register`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error};
use crate::email::{SmtpSink, confirm_address, mailing_server};

/// Registers `name` through the email stage with confirmation session `sid`.
async fn register_with_email(server: &TestServer, name: &str, sid: &str) -> (StatusCode, Value) {
    let body = json!({ "username": name, "password": "a good password" });
    let (status, challenge) = server.post("/_matrix/client/v3/register", None, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut with_auth = body;
    with_auth["auth"] = json!({ "type": "m.login.email.identity", "session": challenge["session"],
        "threepid_creds": { "sid": sid, "client_secret": "s3cret" } });
    server.post("/_matrix/client/v3/register", None, with_auth).await
}

#[tokio::test]
async fn registering_with_a_confirmed_email_address() {
    let sink = SmtpSink::start().await;
    let server = mailing_server(&sink, &[]).await;
    let (_, challenge) = server.post("/_matrix/client/v3/register", None, json!({})).await;
    let flows: Vec<Value> = challenge["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|flow| flow["stages"].clone())
        .collect();
    assert!(flows.contains(&json!(["m.login.email.identity"])), "{flows:?}");
    assert!(
        flows.contains(&json!(["m.login.registration_token", "m.login.email.identity"])),
        "{flows:?}"
    );

    let request_token = "/_matrix/client/v3/register/email/requestToken";
    let sid = confirm_address(&server, &sink, request_token, None, "dana@example.org", 1).await;
    let (status, registered) = register_with_email(&server, "dana", &sid).await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    let token = registered["access_token"].as_str().unwrap();
    let (_, listed) = server.get("/_matrix/client/v3/account/3pid", Some(token)).await;
    assert_eq!(listed["threepids"][0]["address"], "dana@example.org");
    let (status, _) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.thirdparty", "medium": "email", "address": "dana@example.org" }, "password": "a good password" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server
            .post(
                request_token,
                None,
                json!({ "client_secret": "x", "email": "dana@example.org", "send_attempt": 1 }),
            )
            .await,
        400,
        "M_THREEPID_IN_USE",
    );

    // A confirmation for a password reset does not register anyone.
    let reset = confirm_address(
        &server,
        &sink,
        "/_matrix/client/v3/account/password/email/requestToken",
        None,
        "dana@example.org",
        2,
    )
    .await;
    assert_error(&register_with_email(&server, "erin", &reset).await, 403, "M_FORBIDDEN");
}
