//! Hostile input to every route the server serves (as `hearth routes` lists them): malformed,
//! too deep and wrongly shaped bodies, odd path parameters. No answer is a 5xx, every error is
//! Matrix JSON, and the server is alive afterwards.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestServer, assert_error};

/// Bodies no endpoint should take for a valid request; the first ones are sent to every route
/// first, so a body a route accepts (the last ones) cannot change what later routes see.
fn hostile_bodies() -> Vec<Vec<u8>> {
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
    let deep_array = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep_content = format!(r#"{{"msgtype":"m.text","body":"x","n":{}}}"#, deep_object);
    vec![
        deep_object.into_bytes(),
        deep_array.into_bytes(),
        deep_content.into_bytes(),
        b"{not json".to_vec(),
        b"{\"a\":\"\xff\xfe\"}".to_vec(),
        b"1e999999".to_vec(),
        b"[]".to_vec(),
        b"\"a string\"".to_vec(),
        br#"{"msgtype":5,"body":{"x":[1]},"displayname":[],"timeout":"soon","typing":"yes","auth":7,"version":{}}"#.to_vec(),
        br#"{"msgtype":"m.text","body":"nul \u0000 here"}"#.to_vec(),
    ]
}

/// Path parameter values no route should choke on.
const HOSTILE_PARAMETERS: [&str; 7] = ["%00", "%FF%FE", "..%2F..", "@:", "!%F0%9F%92%A9:localhost", "$", "%20"];

/// Whether an answer is acceptable: no 5xx, and an error is Matrix JSON (except on the pages
/// mails link to, whose errors are pages).
fn check(route: &str, url: &str, status: StatusCode, body: &[u8]) {
    assert!(
        !status.is_server_error(),
        "{route} ({url}) answered {status}: {}",
        String::from_utf8_lossy(body)
    );
    let page = route.contains("/_hearth/invite/") || route.contains("/_hearth/email/");
    if status.is_client_error() && !page {
        let error: Value = serde_json::from_slice(body).unwrap_or_else(|_| panic!("{route} ({url}): {status} without JSON"));
        // User-interactive authentication answers 401 with its flows.
        if status == StatusCode::UNAUTHORIZED && error["flows"].is_array() {
            return;
        }
        assert!(
            error["errcode"].is_string() && error["error"].is_string(),
            "{route} ({url}): {status} without errcode and error: {error}"
        );
    }
}

/// Sends requests as one logged-in user and checks each answer.
struct Client<'a> {
    http: reqwest::Client,
    base_url: &'a str,
    token: &'a str,
}

impl Client<'_> {
    async fn send(&self, method: &Method, route: &str, url: String, body: Option<Vec<u8>>) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{url}", self.base_url))
            .bearer_auth(self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        check(route, &url, status, &bytes);
    }
}

#[tokio::test]
async fn hostile_requests_to_every_route() {
    let server = TestServer::start(&[]).await;
    let (token, _) = server.register("mallory", "password1").await;
    let (_, created) = server.post("/_matrix/client/v3/createRoom", Some(&token), json!({})).await;
    let room_id = created["room_id"].as_str().unwrap().to_owned();
    let (_, sent) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t0"),
            Some(&token),
            json!({ "msgtype": "m.text", "body": "hello" }),
        )
        .await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();

    let output = server.command().arg("routes").output().unwrap();
    assert!(output.status.success());
    let mut routes: Vec<(Method, String)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(method, path)| (method.parse().unwrap(), path.to_owned()))
        .collect();
    assert!(routes.len() > 200, "too few routes: {}", routes.len());
    // Routes that end the session go last.
    routes.sort_by_key(|(_, path)| path.contains("/logout"));

    // Real values where the route names a thing, so hostile bodies reach the handlers.
    let real = |name: &str, n: usize| -> String {
        match name {
            "roomId" | "roomIdOrAlias" => room_id.clone(),
            "eventId" => event_id.clone(),
            "userId" => "@mallory:localhost".into(),
            "serverName" => "localhost".into(),
            "eventType" | "type" => "m.room.message".into(),
            "txnId" => format!("hostile{n}"),
            "scope" => "global".into(),
            "kind" => "override".into(),
            "ruleId" => ".m.rule.master".into(),
            "keyName" | "field" => "displayname".into(),
            "relType" => "m.annotation".into(),
            _ => "x".into(),
        }
    };
    let fill = |path: &str, value: &dyn Fn(&str) -> String| -> String {
        let mut filled = String::new();
        let mut rest = path;
        while let Some(start) = rest.find('{') {
            let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
            filled.push_str(&rest[..start]);
            filled.push_str(&value(&rest[start + 1..end]));
            rest = &rest[(end + 1).min(rest.len())..];
        }
        filled.push_str(rest);
        filled
    };

    let client = Client {
        http: reqwest::Client::new(),
        base_url: &server.base_url,
        token: &token,
    };
    // The bodies that once gave 500: too deep is 400 M_BAD_JSON.
    let deep = hostile_bodies().swap_remove(0);
    for (method, path) in [
        (Method::PUT, format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/deep")),
        (Method::PUT, format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.topic/")),
        (Method::POST, "/_matrix/client/v3/room_keys/version".to_owned()),
        (Method::PUT, "/_matrix/client/v3/room_keys/version/1".to_owned()),
    ] {
        let response = client
            .http
            .request(method, format!("{}{path}", server.base_url))
            .bearer_auth(&token)
            .body(deep.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_error(&(status, response.json().await.unwrap()), 400, "M_BAD_JSON");
    }

    let mut sent_requests = 0usize;
    for body in hostile_bodies() {
        for (method, path) in &routes {
            if matches!(*method, Method::POST | Method::PUT) {
                let url = fill(path, &|name| real(name, sent_requests));
                client.send(method, path, url, Some(body.clone())).await;
                sent_requests += 1;
            }
        }
    }
    for parameter in HOSTILE_PARAMETERS {
        for (method, path) in routes.iter().filter(|(_, path)| path.contains('{')) {
            let url = fill(path, &|_| parameter.to_owned());
            let body = matches!(*method, Method::POST | Method::PUT).then(|| b"{}".to_vec());
            client.send(method, path, url, body).await;
            sent_requests += 1;
        }
    }
    for (method, path) in &routes {
        if matches!(*method, Method::GET | Method::DELETE) {
            client.send(method, path, fill(path, &|name| real(name, 0)), None).await;
            sent_requests += 1;
        }
    }
    assert!(sent_requests > 1000, "only {sent_requests} requests sent");

    let (status, _) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK, "the server is not alive after the hostile requests");
}
