//! Several `hearth serve` processes of one server on one PostgreSQL database (these tests run
//! in the PostgreSQL pass of `scripts/test`, and return at once on RocksDB): users logged in on
//! different processes chat, receipts and typing cross, a long poll on one process is woken by
//! every send on the other, and a process killed mid-load leaves the other serving with nothing
//! acknowledged lost.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{TestServer, message_bodies, postgres_cluster};
use crate::federation::sync_for;
use crate::sync::sync;

/// Two processes of one server (`None` on RocksDB); alice registered on the first and bob on
/// the second, both in a public room: (first, second, alice, bob, room).
async fn alice_and_bob_on_two_processes() -> Option<(TestServer, TestServer, String, String, String)> {
    postgres_cluster()?;
    let first = TestServer::start(&[]).await;
    let second = first.another_process().await;
    let (alice, _) = first.register("alice", "alicepass").await;
    let (bob, _) = second.register("bob", "bobpass").await;
    let room = first.create_room(&alice, json!({ "preset": "public_chat" })).await;
    second.join(&bob, &room).await;
    Some((first, second, alice, bob, room))
}

fn timeline(answer: &Value, room: &str) -> Vec<String> {
    message_bodies(&answer["rooms"]["join"][room]["timeline"]["events"])
}

/// Sends a text message; its event ID, or `None` when the server did not acknowledge it.
async fn try_send(server: &TestServer, token: &str, room: &str, txn: &str, body: &str) -> Option<String> {
    let url = format!("{}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}", server.base_url);
    let response = server
        .http
        .put(url)
        .bearer_auth(token)
        .json(&json!({ "msgtype": "m.text", "body": body }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let answer: Value = response.json().await.ok()?;
    answer["event_id"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn users_on_two_processes_chat_and_see_each_others_receipts_and_typing() {
    let Some((first, second, alice, bob, room)) = alice_and_bob_on_two_processes().await else {
        return;
    };
    let alice_since = sync(&first, &alice, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let bob_since = sync(&second, &bob, None, 0).await["next_batch"].as_str().unwrap().to_owned();

    let hello = first
        .send(
            &alice,
            &room,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": "hello from the first" }),
        )
        .await;
    sync_for(&second, &bob, &bob_since, "alice's message on the second process", |answer| {
        timeline(answer, &room).contains(&"hello from the first".to_owned())
    })
    .await;

    second
        .send(
            &bob,
            &room,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": "hello from the second" }),
        )
        .await;
    let (status, body) = second
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{hello}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let (status, body) = second
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/@bob:localhost"),
            Some(&bob),
            json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");

    sync_for(&first, &alice, &alice_since, "bob's reply on the first process", |answer| {
        timeline(answer, &room).contains(&"hello from the second".to_owned())
    })
    .await;
    sync_for(&first, &alice, &alice_since, "bob's read receipt on the first process", |answer| {
        answer["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|event| event["type"] == "m.receipt" && event["content"][&hello]["m.read"]["@bob:localhost"].is_object())
    })
    .await;
    sync_for(&first, &alice, &alice_since, "bob typing, on the first process", |answer| {
        answer["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|event| event["type"] == "m.typing" && event["content"]["user_ids"] == json!(["@bob:localhost"]))
    })
    .await;
}

#[tokio::test]
async fn a_long_poll_on_one_process_wakes_for_each_of_1000_sends_on_the_other() {
    let Some((first, second, alice, bob, room)) = alice_and_bob_on_two_processes().await else {
        return;
    };
    let mut since = sync(&second, &bob, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let (mut missed, mut slowest) = (0, Duration::ZERO);
    for ping in 0..1000 {
        let body = format!("ping {ping}");
        let poll = async {
            let mut seen = false;
            while !seen {
                let started = Instant::now();
                let answer = sync(&second, &bob, Some(&since), 10_000).await;
                let waited = started.elapsed();
                seen = timeline(&answer, &room).contains(&body);
                if !seen && waited >= Duration::from_secs(10) {
                    missed += 1;
                }
                if seen {
                    slowest = slowest.max(waited);
                }
                since = answer["next_batch"].as_str().unwrap().to_owned();
            }
        };
        let send = async {
            // The poll is waiting by now: the send wakes it rather than finding it arriving.
            tokio::time::sleep(Duration::from_millis(3)).await;
            first
                .send(&alice, &room, "m.room.message", json!({ "msgtype": "m.text", "body": body }))
                .await
        };
        tokio::join!(poll, send);
    }
    assert_eq!(missed, 0, "long polls that slept through a ping");
    eprintln!("1000 pings across processes, 0 missed; the slowest wake-up took {slowest:?}");
}

#[tokio::test]
async fn a_process_killed_mid_load_leaves_the_other_serving_and_loses_nothing_acknowledged() {
    let Some((first, mut second, alice, bob, room)) = alice_and_bob_on_two_processes().await else {
        return;
    };
    let alice_since = sync(&first, &alice, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let acknowledged = Mutex::new(Vec::new());
    let (sent_by_second, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
    let second_pid = second.pid();
    let sender = |server: &'static str, number: usize| {
        let (process, token) = if server == "first" { (&first, &alice) } else { (&second, &bob) };
        let (acknowledged, sent_by_second, stop, room) = (&acknowledged, &sent_by_second, &stop, &room);
        async move {
            let mut message = 0;
            while !stop.load(Ordering::SeqCst) {
                let txn = format!("{server}-{number}-{message}");
                match try_send(process, token, room, &txn, &txn).await {
                    Some(event_id) => {
                        acknowledged.lock().unwrap().push(event_id);
                        if server == "second" {
                            sent_by_second.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    None if server == "second" => return,
                    None => panic!("the first process failed a send"),
                }
                message += 1;
            }
        }
    };
    let killer = async {
        while sent_by_second.load(Ordering::SeqCst) < 150 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        unsafe { libc::kill(second_pid as i32, libc::SIGKILL) };
        // The first goes on sending for a while after the kill.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::SeqCst);
    };
    tokio::join!(
        sender("first", 0),
        sender("first", 1),
        sender("second", 0),
        sender("second", 1),
        killer
    );
    second.kill();

    // The stream moves on past whatever the killed process had in flight: a new message on
    // the first process reaches a sync there.
    let started = Instant::now();
    first
        .send(
            &alice,
            &room,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": "after the kill" }),
        )
        .await;
    sync_for(&first, &alice, &alice_since, "a message sent after the kill", |answer| {
        timeline(answer, &room).contains(&"after the kill".to_owned())
    })
    .await;
    eprintln!("a sync saw the first message after the kill in {:?}", started.elapsed());

    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(acknowledged.len() > 300, "only {} messages acknowledged", acknowledged.len());
    for event_id in &acknowledged {
        let (status, body) = first
            .get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), Some(&alice))
            .await;
        assert_eq!(status.as_u16(), 200, "acknowledged {event_id} lost: {body}");
    }
}

#[tokio::test]
async fn an_account_suspended_and_an_appservice_registered_on_one_process_hold_on_the_other() {
    let Some((first, second, alice, bob, room)) = alice_and_bob_on_two_processes().await else {
        return;
    };
    // Alice, the first account, is a server admin: she suspends Bob on the first process, and
    // the second, where Bob is logged in, refuses his message.
    let suspend = "/_matrix/client/v1/admin/suspend/@bob:localhost";
    let (status, body) = first.put(suspend, Some(&alice), json!({ "suspended": true })).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let send = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/suspended");
    crate::federation::eventually("Bob's suspension on the second process", async || {
        second.put(&send, Some(&bob), json!({ "msgtype": "m.text", "body": "hi" })).await.1["errcode"] == "M_USER_SUSPENDED"
    })
    .await;

    // An appservice registered through the first process's admin socket: the second knows its
    // token.
    let file = first.dir.path().join("bot.yaml");
    std::fs::write(
        &file,
        "id: bot\nurl: null\nas_token: as-secret-bot\nhs_token: hs-secret-bot\nsender_localpart: bot\n\
         namespaces:\n  users: []\n  aliases: []\n  rooms: []\n",
    )
    .unwrap();
    let (output, _) = first.admin(&["appservice", "register", file.to_str().unwrap()]);
    assert!(output.status.success(), "register: {}", String::from_utf8_lossy(&output.stderr));
    crate::federation::eventually("the appservice's token on the second process", async || {
        second.get("/_matrix/client/v3/account/whoami", Some("as-secret-bot")).await.1["user_id"] == "@bot:localhost"
    })
    .await;
}
