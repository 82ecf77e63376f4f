//! Accounts over plain HTTP: registration modes and tokens, user-interactive authentication,
//! devices, passwords, deactivation, account data, filters and discovery.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error};

fn registration(name: &str, auth: Value) -> Value {
    json!({ "username": name, "password": "secret-pw", "auth": auth })
}

#[tokio::test]
async fn discovery_versions_capabilities_well_known_and_server_key() {
    let server = TestServer::start(&[]).await;
    let (status, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status.as_u16(), 200);
    assert!(versions["versions"].as_array().unwrap().contains(&json!("v1.1")));

    let (token, _) = server.register("carol", "pw-carol").await;
    let (status, caps) = server.get("/_matrix/client/v3/capabilities", Some(&token)).await;
    assert_eq!(status.as_u16(), 200, "{caps}");
    // `enabled` defaults to true when absent.
    assert_ne!(caps["capabilities"]["m.change_password"]["enabled"], false, "{caps}");
    assert_eq!(caps["capabilities"]["m.room_versions"]["default"], "12");

    // Not configured: 404; configured: delegation.
    assert_error(&server.get("/.well-known/matrix/client", None).await, 404, "M_NOT_FOUND");
    assert_error(&server.get("/.well-known/matrix/server", None).await, 404, "M_NOT_FOUND");
    let delegated = TestServer::start(&[
        ("HEARTH_PUBLIC_BASEURL", "https://matrix.example.org"),
        ("HEARTH_WELL_KNOWN__SERVER", "matrix.example.org:443"),
    ])
    .await;
    let (_, client) = delegated.get("/.well-known/matrix/client", None).await;
    assert_eq!(client["m.homeserver"]["base_url"], "https://matrix.example.org");
    let (_, server_wk) = delegated.get("/.well-known/matrix/server", None).await;
    assert_eq!(server_wk["m.server"], "matrix.example.org:443");

    // The signing key document is self-signed, and the key is kept across restarts.
    let (status, keys) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status.as_u16(), 200, "{keys}");
    assert_eq!(keys["server_name"], "localhost");
    let key_id = keys["verify_keys"].as_object().unwrap().keys().next().unwrap().clone();
    assert!(key_id.starts_with("ed25519:"));
    let document: ruma::CanonicalJsonObject = serde_json::from_value(keys.clone()).unwrap();
    let public_key =
        ruma::serde::Base64::<ruma::serde::base64::Standard>::parse(keys["verify_keys"][&key_id]["key"].as_str().unwrap()).unwrap();
    let key_map = std::collections::BTreeMap::from([(
        "localhost".to_owned(),
        std::collections::BTreeMap::from([(key_id.clone(), public_key)]),
    )]);
    ruma::signatures::verify_json(&key_map, &document).expect("key document signature verifies");
}

#[tokio::test]
async fn registration_modes_tokens_and_bootstrap() {
    // Closed: only the first-start token works, and it makes an admin.
    let mut server = TestServer::start(&[("HEARTH_REGISTRATION", "closed")]).await;
    let log = server.log();
    let bootstrap = log
        .split("registration_token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the first start logs a registration token")
        .trim_matches('"')
        .to_owned();
    let (status, flows) = server
        .post("/_matrix/client/v3/register", None, json!({ "username": "root", "password": "x" }))
        .await;
    assert_eq!(status.as_u16(), 401);
    assert_eq!(flows["flows"], json!([{ "stages": ["m.login.registration_token"] }]));
    let session = flows["session"].as_str().unwrap();
    let (status, valid) = server
        .get(
            &format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={bootstrap}"),
            None,
        )
        .await;
    assert_eq!((status.as_u16(), &valid["valid"]), (200, &json!(true)));
    let wrong = registration(
        "root",
        json!({ "type": "m.login.registration_token", "token": "wrong", "session": session }),
    );
    let answer = server.post("/_matrix/client/v3/register", None, wrong).await;
    assert_eq!(answer.0.as_u16(), 401);
    assert_eq!(answer.1["errcode"], "M_FORBIDDEN");
    let right = registration(
        "root",
        json!({ "type": "m.login.registration_token", "token": bootstrap, "session": session }),
    );
    let (status, body) = server.post("/_matrix/client/v3/register", None, right).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let (_, users) = server.admin(&["user", "list"]);
    assert_eq!(users["users"][0]["user_id"], "@root:localhost");
    assert_eq!(users["users"][0]["admin"], true);
    // Used up: registration is closed now, and the token is not logged again.
    assert_error(
        &server.post("/_matrix/client/v3/register", None, json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let lines_before = server.log().matches("registration_token=").count();
    server.restart().await;
    assert_eq!(server.log().matches("registration_token=").count(), lines_before);

    // Token mode: dummy is not offered, an admin-made token with one use is.
    let server = TestServer::start(&[("HEARTH_REGISTRATION", "token")]).await;
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/register",
                None,
                registration("dan", json!({ "type": "m.login.dummy" })),
            )
            .await,
        401,
        "M_FORBIDDEN",
    );
    let (output, token) = server.admin(&["registration-token", "create", "--uses", "1"]);
    assert!(output.status.success(), "{output:?}");
    let token = token["token"]["token"].as_str().unwrap().to_owned();
    let (status, body) = server
        .post(
            "/_matrix/client/v3/register",
            None,
            registration("dan", json!({ "type": "m.login.registration_token", "token": token })),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let answer = server
        .post(
            "/_matrix/client/v3/register",
            None,
            registration("eve", json!({ "type": "m.login.registration_token", "token": token })),
        )
        .await;
    assert_eq!((answer.0.as_u16(), answer.1["errcode"].as_str()), (401, Some("M_FORBIDDEN")));
    let (_, valid) = server
        .get(
            &format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={token}"),
            None,
        )
        .await;
    assert_eq!(valid["valid"], false);
    let (_, tokens) = server.admin(&["registration-token", "list"]);
    let listed = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["token"] == token.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["completed"], 1);

    // Open mode: dummy works; inhibit_login gives no token.
    let server = TestServer::start(&[]).await;
    let mut body = registration("gina", json!({ "type": "m.login.dummy" }));
    body["inhibit_login"] = json!(true);
    let (status, body) = server.post("/_matrix/client/v3/register", None, body).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(body["user_id"], "@gina:localhost");
    assert!(body.get("access_token").is_none());
    assert_eq!(server.login("gina", "secret-pw").await.0.as_u16(), 200);
}

#[tokio::test]
async fn login_variants_devices_and_uia() {
    let server = TestServer::start(&[]).await;
    let (token, first_device) = server.register("hank", "hank-pw").await;

    // Full user ID, upper case, and the deprecated bare `user` field all log in.
    assert_eq!(server.login("@hank:localhost", "hank-pw").await.0.as_u16(), 200);
    assert_eq!(server.login("HANK", "hank-pw").await.0.as_u16(), 200);
    let (status, legacy) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "user": "hank", "password": "hank-pw" }),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{legacy}");
    let (_, flows) = server.get("/_matrix/client/v3/login", None).await;
    assert_eq!(flows["flows"][0]["type"], "m.login.password");

    // Logging in again with a device ID replaces that device's token.
    let (_, again) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "hank" }, "password": "hank-pw", "device_id": first_device }),
        )
        .await;
    assert_eq!(again["device_id"], first_device.as_str());
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some(&token)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let token = again["access_token"].as_str().unwrap().to_owned();

    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(&token)).await;
    let devices = devices["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 4);
    assert!(
        devices
            .iter()
            .all(|d| d["last_seen_ts"].is_u64() && d["last_seen_ip"] == "127.0.0.1")
    );
    let other = devices
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .find(|id| *id != first_device)
        .unwrap();

    // Rename and read back one device; unknown devices are 404.
    let path = format!("/_matrix/client/v3/devices/{other}");
    assert_eq!(
        server.put(&path, Some(&token), json!({ "display_name": "Phone" })).await.0.as_u16(),
        200
    );
    assert_eq!(server.get(&path, Some(&token)).await.1["display_name"], "Phone");
    assert_error(
        &server.get("/_matrix/client/v3/devices/NOPE", Some(&token)).await,
        404,
        "M_NOT_FOUND",
    );

    // Deleting needs the password: first the flows, then a wrong password, then the right one.
    let (status, challenge) = server.request(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(status.as_u16(), 401);
    assert_eq!(challenge["flows"], json!([{ "stages": ["m.login.password"] }]));
    let session = challenge["session"].as_str().unwrap();
    let auth = |password: &str| json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "hank" }, "password": password, "session": session } });
    let (status, failed) = server.request(Method::DELETE, &path, Some(&token), Some(auth("nope"))).await;
    assert_eq!((status.as_u16(), failed["errcode"].as_str()), (401, Some("M_FORBIDDEN")));
    assert_eq!(
        server
            .request(Method::DELETE, &path, Some(&token), Some(auth("hank-pw")))
            .await
            .0
            .as_u16(),
        200
    );
    assert_error(&server.get(&path, Some(&token)).await, 404, "M_NOT_FOUND");

    // delete_devices removes the rest but ours, in one UIA round trip without a session.
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(&token)).await;
    let rest: Vec<String> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .filter(|id| *id != first_device)
        .collect();
    let body = json!({ "devices": rest, "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "hank" }, "password": "hank-pw" } });
    assert_eq!(
        server
            .post("/_matrix/client/v3/delete_devices", Some(&token), body)
            .await
            .0
            .as_u16(),
        200
    );
    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(&token)).await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1);

    // Logout all ends every session.
    assert_eq!(
        server
            .post("/_matrix/client/v3/logout/all", Some(&token), json!({}))
            .await
            .0
            .as_u16(),
        200
    );
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some(&token)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn password_change_and_deactivation() {
    let server = TestServer::start(&[]).await;
    let (token, _) = server.register("ivy", "old-password").await;
    let (_, other) = server.login("ivy", "old-password").await;
    let other = other["access_token"].as_str().unwrap().to_owned();
    // Used once, so the server keeps it: the password change below must still revoke it.
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(&other)).await.0.as_u16(), 200);
    let auth = |password: &str| json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "@ivy:localhost" }, "password": password });

    let (status, _) = server
        .post(
            "/_matrix/client/v3/account/password",
            Some(&token),
            json!({ "new_password": "new-password" }),
        )
        .await;
    assert_eq!(status.as_u16(), 401);
    let body = json!({ "new_password": "new-password", "auth": auth("old-password") });
    assert_eq!(
        server
            .post("/_matrix/client/v3/account/password", Some(&token), body)
            .await
            .0
            .as_u16(),
        200
    );
    // Other sessions are logged out, this one stays; only the new password works.
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some(&other)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(&token)).await.0.as_u16(), 200);
    assert_error(&server.login("ivy", "old-password").await, 403, "M_FORBIDDEN");
    assert_eq!(server.login("ivy", "new-password").await.0.as_u16(), 200);

    let body = json!({ "auth": auth("new-password") });
    let (status, body) = server.post("/_matrix/client/v3/account/deactivate", Some(&token), body).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", Some(&token)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(&server.login("ivy", "new-password").await, 403, "M_USER_DEACTIVATED");
    // The name stays taken.
    let retry = json!({ "username": "ivy", "password": "x", "auth": { "type": "m.login.dummy" } });
    assert_error(&server.post("/_matrix/client/v3/register", None, retry).await, 400, "M_USER_IN_USE");
}

#[tokio::test]
async fn account_data_filters_and_profiles() {
    let server = TestServer::start(&[]).await;
    let (token, _) = server.register("jack", "jack-pw").await;
    let (other, _) = server.register("kate", "kate-pw").await;

    let global = "/_matrix/client/v3/user/@jack:localhost/account_data/im.hearth.test";
    assert_error(&server.get(global, Some(&token)).await, 404, "M_NOT_FOUND");
    assert_eq!(server.put(global, Some(&token), json!({ "theme": "dark" })).await.0.as_u16(), 200);
    assert_eq!(server.get(global, Some(&token)).await.1, json!({ "theme": "dark" }));
    assert_error(&server.get(global, Some(&other)).await, 403, "M_FORBIDDEN");
    let room = "/_matrix/client/v3/user/@jack:localhost/rooms/!room:localhost/account_data/m.tag_order";
    assert_eq!(server.put(room, Some(&token), json!({ "order": [1] })).await.0.as_u16(), 200);
    assert_eq!(server.get(room, Some(&token)).await.1, json!({ "order": [1] }));
    let push_rules = "/_matrix/client/v3/user/@jack:localhost/account_data/m.push_rules";
    assert_error(&server.put(push_rules, Some(&token), json!({})).await, 405, "M_BAD_JSON");
    let fully_read = "/_matrix/client/v3/user/@jack:localhost/rooms/!room:localhost/account_data/m.fully_read";
    assert_error(&server.put(fully_read, Some(&token), json!({})).await, 405, "M_BAD_JSON");

    let filter = json!({ "room": { "timeline": { "limit": 10 } }, "presence": { "not_types": ["*"] } });
    let (status, created) = server
        .post("/_matrix/client/v3/user/@jack:localhost/filter", Some(&token), filter)
        .await;
    assert_eq!(status.as_u16(), 200, "{created}");
    let id = created["filter_id"].as_str().unwrap();
    let (_, second) = server
        .post("/_matrix/client/v3/user/@jack:localhost/filter", Some(&token), json!({}))
        .await;
    assert_ne!(second["filter_id"].as_str().unwrap(), id);
    let (status, fetched) = server
        .get(&format!("/_matrix/client/v3/user/@jack:localhost/filter/{id}"), Some(&token))
        .await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(fetched["room"]["timeline"]["limit"], 10);
    assert_error(
        &server.get("/_matrix/client/v3/user/@jack:localhost/filter/999", Some(&token)).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get(&format!("/_matrix/client/v3/user/@jack:localhost/filter/{id}"), Some(&other))
            .await,
        403,
        "M_FORBIDDEN",
    );

    // Profiles are public to read, private to write; fields can be removed.
    let displayname = "/_matrix/client/v3/profile/@jack:localhost/displayname";
    assert_error(
        &server.put(displayname, Some(&other), json!({ "displayname": "Evil" })).await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        server
            .put(displayname, Some(&token), json!({ "displayname": "Jack" }))
            .await
            .0
            .as_u16(),
        200
    );
    assert_eq!(server.get(displayname, None).await.1, json!({ "displayname": "Jack" }));
    let tz = "/_matrix/client/v3/profile/@jack:localhost/m.tz";
    assert_eq!(
        server.put(tz, Some(&token), json!({ "m.tz": "Europe/Paris" })).await.0.as_u16(),
        200
    );
    let (_, profile) = server.get("/_matrix/client/v3/profile/@jack:localhost", None).await;
    assert_eq!(profile, json!({ "displayname": "Jack", "m.tz": "Europe/Paris" }));
    assert_eq!(server.request(Method::DELETE, tz, Some(&token), None).await.0.as_u16(), 200);
    assert_error(&server.get(tz, None).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn whois_for_server_admins() {
    let server = TestServer::start(&[]).await;
    // The first account is a server admin.
    let (admin, _) = server.register("alice", "password").await;
    let (bob, bob_device) = server.register("bob", "password").await;
    let (status, whois) = server.get("/_matrix/client/v3/admin/whois/@bob:localhost", Some(&admin)).await;
    assert_eq!(status.as_u16(), 200, "{whois}");
    assert_eq!(whois["user_id"], "@bob:localhost");
    let connection = &whois["devices"][&bob_device]["sessions"][0]["connections"][0];
    assert_eq!(connection["ip"], "127.0.0.1", "{whois}");
    assert!(connection["last_seen"].is_u64(), "{whois}");
    // Users may ask about themselves only.
    assert_eq!(
        server
            .get("/_matrix/client/v3/admin/whois/@bob:localhost", Some(&bob))
            .await
            .0
            .as_u16(),
        200
    );
    assert_error(
        &server.get("/_matrix/client/v3/admin/whois/@alice:localhost", Some(&bob)).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.get("/_matrix/client/v3/admin/whois/@nobody:localhost", Some(&admin)).await,
        404,
        "M_NOT_FOUND",
    );
}
