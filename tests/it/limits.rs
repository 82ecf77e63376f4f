//! The limits that keep one client from hurting the others: a slow-loris client trickling
//! headers or a body is cut off, a user flooding sends is rate limited, a user's long polls are
//! capped, and connections beyond the cap are refused — while other users' messages are
//! delivered all along.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestServer, assert_error, message_bodies};

/// A server with one-second read timeouts, a message limit of 5 at once then 1 a second, and
/// 2 long polls per user.
async fn strict_server(max_connections: &str) -> TestServer {
    TestServer::start(&[
        ("HEARTH_LIMITS__HEADER_READ_TIMEOUT", "1s"),
        ("HEARTH_LIMITS__BODY_READ_TIMEOUT", "1s"),
        ("HEARTH_LIMITS__MAX_CONNECTIONS", max_connections),
        ("HEARTH_LIMITS__MAX_LONG_POLLS_PER_USER", "2"),
        ("HEARTH_RATE_LIMITS__MESSAGE__PER_SECOND", "1"),
        ("HEARTH_RATE_LIMITS__MESSAGE__BURST", "5"),
    ])
    .await
}

/// A raw connection to the server that has sent `head` (part of a request) and then trickles
/// one more byte every 200 ms.
async fn trickle(server: &TestServer, head: &'static str) -> tokio::task::JoinHandle<Duration> {
    let address = server.base_url.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        let started = Instant::now();
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buffer = [0u8; 1024];
        loop {
            // Until the server closes the connection (or answers, for a body cut off).
            if stream.write_all(b"x").await.is_err() {
                return started.elapsed();
            }
            match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await {
                Ok(Ok(0) | Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => {
                    let answer = String::from_utf8_lossy(&buffer);
                    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
                    return started.elapsed();
                }
                Err(_) => assert!(started.elapsed() < Duration::from_secs(20), "never cut off"),
            }
        }
    })
}

/// Bob sends a message and Alice, long-polling, gets it.
async fn delivered(server: &TestServer, alice: &str, bob: &str, room: &str, since: &str, body: &str) -> String {
    server
        .send(bob, room, "m.room.message", json!({ "msgtype": "m.text", "body": body }))
        .await;
    let mut since = since.to_owned();
    loop {
        let path = format!("/_matrix/client/v3/sync?timeout=10000&since={since}");
        let (status, answer) = server.get(&path, Some(alice)).await;
        assert_eq!(status.as_u16(), 200, "{answer}");
        since = answer["next_batch"].as_str().unwrap().to_owned();
        if message_bodies(&answer["rooms"]["join"][room]["timeline"]["events"]).contains(&body.to_owned()) {
            return since;
        }
    }
}

#[tokio::test]
async fn slow_clients_and_floods_leave_other_users_unaffected() {
    let server = strict_server("100").await;
    let (alice, _) = server.register("alice", "pw").await;
    let (bob, _) = server.register("bob", "pw").await;
    let (mallory, _) = server.register("mallory", "pw").await;
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    for user in [&bob, &mallory] {
        server.join(user, &room).await;
    }
    let (_, first) = server.get("/_matrix/client/v3/sync?timeout=0", Some(&alice)).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // Twenty connections trickle their headers, ten their bodies, ten send nothing: all are
    // cut off, and Alice gets Bob's message meanwhile.
    let mut trickling = Vec::new();
    for _ in 0..20 {
        trickling.push(trickle(&server, "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Slow: ").await);
    }
    for _ in 0..10 {
        let head = "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
        trickling.push(trickle(&server, head).await);
    }
    // Ten connections send nothing at all: they are closed too.
    let address = server.base_url.trim_start_matches("http://").to_owned();
    for _ in 0..10 {
        let address = address.clone();
        trickling.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(&address).await.unwrap();
            let mut buffer = [0u8; 16];
            let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer)).await;
            assert!(matches!(read, Ok(Ok(0) | Err(_))), "a silent connection was kept: {read:?}");
            started.elapsed()
        }));
    }
    let since = delivered(&server, &alice, &bob, &room, &since, "while they trickle").await;
    for connection in trickling {
        let lasted = connection.await.unwrap();
        assert!(lasted < Duration::from_secs(20), "a trickling connection lasted {lasted:?}");
    }

    // Mallory floods: past the burst, 429 with a retry time; Bob's sends are not limited by it.
    let mut limited = None;
    for i in 0..20 {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/flood{i}");
        let answer = server
            .put(&path, Some(&mallory), json!({ "msgtype": "m.text", "body": "spam" }))
            .await;
        if answer.0.as_u16() == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the flood is limited");
    assert_error(&limited, 429, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{}", limited.1);
    let since = delivered(&server, &alice, &bob, &room, &since, "after the flood").await;

    // Two long polls of Alice's wait; a third is refused at once.
    let sync = format!("/_matrix/client/v3/sync?timeout=3000&since={since}");
    let polls: Vec<_> = (0..2)
        .map(|_| {
            let (url, http, token) = (format!("{}{sync}", server.base_url), server.http.clone(), alice.clone());
            tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.unwrap().status().as_u16() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = server.get(&sync, Some(&alice)).await;
    assert_error(&answer, 429, "M_LIMIT_EXCEEDED");
    for poll in polls {
        assert_eq!(poll.await.unwrap(), 200);
    }
    let (status, _) = server.get("/_matrix/client/v3/sync?timeout=0", Some(&alice)).await;
    assert_eq!(status.as_u16(), 200, "the cap counts waiting polls only");

    // An appservice (a bridge relaying a busy channel) is not limited unless its registration
    // says `rate_limited: true`.
    let registration = server.dir.path().join("bridge.yaml");
    let yaml = "id: relay\nurl: null\nas_token: relay-as\nhs_token: relay-hs\nsender_localpart: relay\nnamespaces: {}\n";
    std::fs::write(&registration, yaml).unwrap();
    let (output, _) = server.admin(&["appservice", "register", registration.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    server.join("relay-as", &room).await;
    for i in 0..20 {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/relay{i}");
        let (status, answer) = server
            .put(&path, Some("relay-as"), json!({ "msgtype": "m.text", "body": "relayed" }))
            .await;
        assert_eq!(status.as_u16(), 200, "{answer}");
    }
    // Without a url it is pushed nothing: nothing waits for it.
    let (_, listed) = server.admin(&["appservice", "list"]);
    assert_eq!(listed["details"][0]["queued"], 0, "{listed}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_until_some_close() {
    let server = strict_server("3").await;
    let address = server.base_url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The fourth connection is told the server is full, in Matrix JSON.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("M_LIMIT_EXCEEDED"), "{answer}");

    // The held connections never finish their headers: once they are cut off, clients get in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = server.get("/_matrix/client/versions", None).await;
        if status.as_u16() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the held connections were never cut off");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(held);
}
