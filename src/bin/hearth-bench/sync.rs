//! The sync workloads: delivery latency through a long-polling `/sync` or sliding sync (the
//! ping machinery the federation workload uses too), incremental sync cost by room count, and
//! sliding sync's first response.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{BenchResult, Cli, Figure, Session, latency_figures, quantile_ms, register};

/// How a long-polling sync of one kind is made and read, for [`ping_deliveries`].
pub struct LongPoll {
    /// The request waiting for what comes after a token.
    request: fn(&Session, &str) -> reqwest::RequestBuilder,
    /// A room's new timeline events in a response.
    events: fn(&Value, &str) -> Option<Vec<Value>>,
    /// The token a response gives for the next request.
    next: fn(&Value) -> BenchResult<String>,
}

pub const SYNC_V3: LongPoll = LongPoll {
    request: |session, since| {
        session
            .http
            .get(format!(
                "{}/_matrix/client/v3/sync?since={since}&timeout={}",
                session.url,
                POLL_TIMEOUT.as_millis()
            ))
            .bearer_auth(&session.token)
    },
    events: |body, room| body["rooms"]["join"][room]["timeline"]["events"].as_array().cloned(),
    next: next_batch,
};

const SLIDING: LongPoll = LongPoll {
    request: |session, pos| {
        session
            .http
            .post(format!(
                "{}{SLIDING_SYNC}?pos={pos}&timeout={}",
                session.url,
                POLL_TIMEOUT.as_millis()
            ))
            .bearer_auth(&session.token)
            // The whole request each time, as matrix-sdk sends it (not every server keeps
            // lists sticky).
            .json(&room_list_request("live"))
    },
    events: |body, room| body["rooms"][room]["timeline"].as_array().cloned(),
    next: pos_of,
};

/// The delivery figures of [`ping_deliveries`]: p50 and p99 latency, and missed wake-ups.
pub fn delivery_figures(through: &str, mut latencies: Vec<Duration>, missed: usize) -> Vec<Figure> {
    latencies.sort();
    let mut figures = latency_figures(&format!("delivery send -> {through} ({} pings)", latencies.len()), &latencies);
    figures.push(Figure {
        name: format!("missed wake-ups ({through})"),
        value: missed as f64,
        unit: "pings",
    });
    figures
}

/// The timeout of the long polls the load tool makes.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// Pings through a long poll: the receiver waits, the sender sends, the clock runs until a
/// poll returns the message. A poll may come back early with something else (the receiver's
/// own presence, say); the receiver then polls again. Returns the latencies and the missed
/// wake-ups: polls that slept to their timeout while the ping waited.
pub async fn ping_deliveries(
    sender: &Session,
    receiver: &Session,
    room: &str,
    pings: usize,
    mut token: String,
    poll: LongPoll,
) -> BenchResult<(Vec<Duration>, usize)> {
    let start_poll = |token: &str| {
        let request = (poll.request)(receiver, token);
        tokio::spawn(async move {
            let started = Instant::now();
            let response = request.send().await.map_err(|e| e.to_string())?;
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((body, Instant::now(), started.elapsed()))
        })
    };
    let mut latencies = Vec::with_capacity(pings);
    let mut missed = 0;
    for n in 0..pings {
        let mut waiting = start_poll(&token);
        // Let the poll reach the server and wait.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let sent = Instant::now();
        let body_text = format!("ping {n}");
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/ping{n}");
        sender
            .json(reqwest::Method::PUT, &path, json!({ "msgtype": "m.text", "body": body_text }))
            .await?;
        loop {
            let (body, returned, polled) = waiting.await.map_err(|e| e.to_string())??;
            token = (poll.next)(&body)?;
            let delivered = (poll.events)(&body, room).is_some_and(|events| events.iter().any(|e| e["content"]["body"] == body_text));
            if delivered {
                latencies.push(returned.saturating_duration_since(sent));
                break;
            }
            if polled >= POLL_TIMEOUT {
                missed += 1;
            }
            waiting = start_poll(&token);
        }
    }
    Ok((latencies, missed))
}

/// A sync token from a `/sync` answer.
pub fn next_batch(sync: &Value) -> BenchResult<String> {
    sync["next_batch"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no next_batch in {sync}"))
}

/// Two new users in a new public room: (sender, receiver, room ID).
async fn sender_and_receiver(cli: &Cli) -> BenchResult<(Session, Session, String)> {
    let sender = register(cli).await?;
    let receiver = register(cli).await?;
    let room = sender.create_public_room().await?;
    receiver
        .json(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{room}"), json!({}))
        .await?;
    Ok((sender, receiver, room))
}

pub async fn sync(cli: &Cli, pings: usize, room_counts: &[usize]) -> BenchResult<Vec<Figure>> {
    let (sender, receiver, room) = sender_and_receiver(cli).await?;
    let since = next_batch(
        &receiver
            .json(reqwest::Method::GET, "/_matrix/client/v3/sync?timeout=0", Value::Null)
            .await?,
    )?;

    let (latencies, missed) = ping_deliveries(&sender, &receiver, &room, pings, since, SYNC_V3).await?;
    let mut figures = delivery_figures("long-poll sync", latencies, missed);

    // Initial sync of a fresh device for a user in R rooms of 20 messages each, then
    // incremental sync in them, one room changed.
    for &count in room_counts {
        let user = register(cli).await?;
        let mut rooms = Vec::with_capacity(count);
        for _ in 0..count {
            let created = user.json(reqwest::Method::POST, "/_matrix/client/v3/createRoom", json!({})).await?;
            rooms.push(created["room_id"].as_str().ok_or("createRoom returned no room_id")?.to_owned());
        }
        for (n, room) in rooms.iter().enumerate() {
            for m in 0..ROOM_MESSAGES {
                user.send_text(room, &format!("fill{n}-{m}"), "some history").await?;
            }
        }
        let (mut initials, mut parsed) = (Vec::new(), Vec::new());
        let mut initial = Value::Null;
        for _ in 0..INITIAL_SYNCS {
            let device = user.login_again().await?;
            let started = Instant::now();
            let (arrived, body) = device
                .timed_json(reqwest::Method::GET, "/_matrix/client/v3/sync?timeout=0", Value::Null)
                .await?;
            parsed.push(started.elapsed());
            initials.push(arrived);
            initial = body;
        }
        initials.sort();
        parsed.sort();
        figures.push(Figure {
            name: format!("initial sync of a new device, user in {count} rooms of {ROOM_MESSAGES} messages, p50"),
            value: quantile_ms(&initials, 0.5),
            unit: "ms",
        });
        figures.push(Figure {
            name: format!("the same with the client's parse of the answer (serde_json::Value), {count} rooms, p50"),
            value: quantile_ms(&parsed, 0.5),
            unit: "ms",
        });
        let mut since = next_batch(&initial)?;
        let mut times = Vec::new();
        for n in 0..20 {
            let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/inc{n}", rooms[n % rooms.len()]);
            user.json(reqwest::Method::PUT, &path, json!({ "msgtype": "m.text", "body": "changed" }))
                .await?;
            let started = Instant::now();
            let body = user
                .json(
                    reqwest::Method::GET,
                    &format!("/_matrix/client/v3/sync?since={since}&timeout=0"),
                    Value::Null,
                )
                .await?;
            times.push(started.elapsed());
            since = next_batch(&body)?;
        }
        times.sort();
        figures.push(Figure {
            name: format!("incremental sync, user in {count} rooms, p50"),
            value: quantile_ms(&times, 0.5),
            unit: "ms",
        });
    }
    Ok(figures)
}

/// Messages in each room before the initial syncs are timed.
const ROOM_MESSAGES: usize = 20;
/// Initial syncs timed per room count, each by a new device.
const INITIAL_SYNCS: usize = 5;

pub const SLIDING_SYNC: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// A sliding-sync request like Element X's room list: the 20 most recent rooms with the state
/// a room list shows and the latest event.
fn room_list_request(conn_id: &str) -> Value {
    json!({
        "conn_id": conn_id,
        "lists": { "all": {
            "ranges": [[0, 19]], "timeline_limit": 1,
            "required_state": [["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""],
                               ["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.canonical_alias", ""],
                               ["m.room.power_levels", ""], ["m.room.create", ""], ["m.room.topic", ""]]
        } },
        "extensions": { "to_device": { "enabled": true }, "e2ee": { "enabled": true },
                        "account_data": { "enabled": true }, "receipts": { "enabled": true }, "typing": { "enabled": true } }
    })
}

pub fn pos_of(response: &Value) -> BenchResult<String> {
    response["pos"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no pos in {response}"))
}

pub async fn sliding(cli: &Cli, pings: usize, room_count: usize) -> BenchResult<Vec<Figure>> {
    // First response of a fresh connection for a user in many rooms, each with a message.
    let user = register(cli).await?;
    for n in 0..room_count {
        let created = user
            .json(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                json!({ "name": format!("room {n}") }),
            )
            .await?;
        let room = created["room_id"].as_str().ok_or("createRoom returned no room_id")?;
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/first");
        user.json(reqwest::Method::PUT, &path, json!({ "msgtype": "m.text", "body": "hello" }))
            .await?;
    }
    let mut firsts = Vec::new();
    for n in 0..10 {
        let started = Instant::now();
        let response = user
            .json(reqwest::Method::POST, SLIDING_SYNC, room_list_request(&format!("first{n}")))
            .await?;
        firsts.push(started.elapsed());
        if response["rooms"].as_object().map_or(0, |rooms| rooms.len()) != room_count.min(20) {
            return Err(format!(
                "the first response lists {} rooms",
                response["rooms"].as_object().map_or(0, |r| r.len())
            ));
        }
    }
    firsts.sort();

    // Delivery: the receiver long-polls its connection, the sender sends.
    let (sender, receiver, room) = sender_and_receiver(cli).await?;
    let pos = pos_of(
        &receiver
            .json(reqwest::Method::POST, SLIDING_SYNC, room_list_request("live"))
            .await?,
    )?;
    let (latencies, missed) = ping_deliveries(&sender, &receiver, &room, pings, pos, SLIDING).await?;
    let mut figures = vec![
        Figure {
            name: format!("sliding sync first response, {room_count} rooms, p50"),
            value: quantile_ms(&firsts, 0.5),
            unit: "ms",
        },
        Figure {
            name: format!("sliding sync first response, {room_count} rooms, max"),
            value: quantile_ms(&firsts, 1.0),
            unit: "ms",
        },
    ];
    figures.extend(delivery_figures("sliding sync", latencies, missed));
    Ok(figures)
}
