//! Every error case of the foundation answers with the spec's status and errcode.

use reqwest::Method;
use serde_json::json;

use crate::common::{TestServer, assert_error};

#[tokio::test]
async fn routing_json_and_token_errors() {
    let server = TestServer::start(&[]).await;
    let (token, _) = server.register("erin", "password1").await;

    // Unknown path, wrong method.
    assert_error(
        &server.get("/_matrix/client/v3/no/such/endpoint", None).await,
        404,
        "M_UNRECOGNIZED",
    );
    assert_error(&server.get("/nothing", None).await, 404, "M_UNRECOGNIZED");
    assert_error(
        &server.request(Method::DELETE, "/_matrix/client/v3/login", None, None).await,
        405,
        "M_UNRECOGNIZED",
    );

    // Malformed and wrongly shaped JSON.
    assert_error(
        &server
            .request_raw(Method::POST, "/_matrix/client/v3/login", None, "{not json")
            .await,
        400,
        "M_NOT_JSON",
    );
    assert_error(
        &server
            .post("/_matrix/client/v3/login", None, json!({ "type": "m.login.password" }))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &server
            .request_raw(
                Method::PUT,
                "/_matrix/client/v3/profile/@erin:localhost/displayname",
                Some(&token),
                "[1,2",
            )
            .await,
        400,
        "M_NOT_JSON",
    );
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/profile/@erin:localhost/displayname",
                Some(&token),
                json!({ "displayname": 5 }),
            )
            .await,
        400,
        "M_BAD_JSON",
    );

    // Missing and unknown tokens, by header and by query parameter.
    assert_error(&server.get("/_matrix/client/v3/account/whoami", None).await, 401, "M_MISSING_TOKEN");
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some("hth_nope_nope")).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some("garbage")).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let forged = format!("{}x", token);
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some(&forged)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let (status, body) = server
        .get(&format!("/_matrix/client/v3/account/whoami?access_token={token}"), None)
        .await;
    assert_eq!((status.as_u16(), body["user_id"].as_str()), (200, Some("@erin:localhost")));

    // Usernames.
    let register = |name: &str| json!({ "username": name, "password": "pw-pw-pw", "auth": { "type": "m.login.dummy" } });
    assert_error(
        &server.post("/_matrix/client/v3/register", None, register("erin")).await,
        400,
        "M_USER_IN_USE",
    );
    assert_error(
        &server.post("/_matrix/client/v3/register", None, register("Erin!")).await,
        400,
        "M_INVALID_USERNAME",
    );
    assert_error(
        &server.post("/_matrix/client/v3/register", None, register("")).await,
        400,
        "M_INVALID_USERNAME",
    );
    assert_error(
        &server.get("/_matrix/client/v3/register/available?username=erin", None).await,
        400,
        "M_USER_IN_USE",
    );
    assert_error(
        &server.get("/_matrix/client/v3/register/available?username=UPPER", None).await,
        400,
        "M_INVALID_USERNAME",
    );
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=frank", None).await;
    assert_eq!((status.as_u16(), &body["available"]), (200, &json!(true)));

    // Wrong password and unknown user look the same.
    assert_error(&server.login("erin", "wrong").await, 403, "M_FORBIDDEN");
    assert_error(&server.login("nobody", "wrong").await, 403, "M_FORBIDDEN");

    // Guests are not supported.
    assert_error(
        &server.post("/_matrix/client/v3/register?kind=guest", None, json!({})).await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );

    // Bad identifiers in the path.
    assert_error(
        &server.get("/_matrix/client/v3/profile/not-a-user-id", None).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get("/_matrix/client/v3/profile/@ghost:localhost", None).await,
        404,
        "M_NOT_FOUND",
    );

    // Oversized bodies (on a connection of their own: the server does not read the rest of the
    // body, so it closes that connection).
    let big = json!({ "displayname": "x".repeat(2 * 1024 * 1024) });
    let response = reqwest::Client::new()
        .put(format!("{}/_matrix/client/v3/profile/@erin:localhost/displayname", server.base_url))
        .bearer_auth(&token)
        .json(&big)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_error(&(status, response.json().await.unwrap()), 413, "M_TOO_LARGE");

    // The server is still healthy after all of it.
    assert_eq!(server.get("/_matrix/client/versions", None).await.0.as_u16(), 200);
}

#[tokio::test]
async fn login_and_registration_are_rate_limited_per_ip() {
    let server = TestServer::start(&[
        ("HEARTH_RATE_LIMITS__LOGIN__BURST", "3"),
        ("HEARTH_RATE_LIMITS__LOGIN__PER_SECOND", "0.01"),
    ])
    .await;
    for _ in 0..3 {
        assert_error(&server.login("nobody", "wrong").await, 403, "M_FORBIDDEN");
    }
    let answer = server.login("nobody", "wrong").await;
    assert_error(&answer, 429, "M_LIMIT_EXCEEDED");
    assert!(answer.1["retry_after_ms"].as_u64().unwrap() > 0, "{}", answer.1);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let server = TestServer::start(&[]).await;
    let client = reqwest::Client::new();
    let response = client
        .request(Method::OPTIONS, format!("{}/_matrix/client/v3/login", server.base_url))
        .header("Origin", "https://app.element.io")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    for method in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type") && allowed.contains("x-requested-with"));

    let response = client
        .get(format!("{}/_matrix/client/versions", server.base_url))
        .header("Origin", "https://app.element.io")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}
