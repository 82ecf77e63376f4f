//! The appservice workload: hearth-bench plays the appservice (a small HTTP receiver of
//! transactions on `--listen`, registered on the server under test by
//! `scripts/bench-appservice`), its bot joins a room, and a user's messages are timed from the
//! send to the transaction that carries them: one at a time for latency, then a burst from
//! 10 senders for the delivery rate and how many events each transaction carried, and a
//! backlog sent while the appservice is down, drained once it is back. `--members` fills the
//! room with that many of the appservice's puppets first (a big bridged room).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::put;
use serde_json::{Value, json};

use super::{BenchResult, Figure, Session, from_senders, latency_figures, millis};

/// What the receiver saw: when each message body arrived, and the transactions' sizes.
#[derive(Default)]
struct Received {
    arrived: HashMap<String, Instant>,
    transactions: usize,
    events: usize,
    /// Playing an appservice that is down: every transaction gets 503.
    down: bool,
}

type Shared = Arc<Mutex<Received>>;

/// `PUT /_matrix/app/v1/transactions/{txnId}`: records the message bodies it carries.
async fn transaction(
    State(received): State<Shared>,
    Path(_txn): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Result<axum::Json<Value>, axum::http::StatusCode> {
    let now = Instant::now();
    let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
    if received.down {
        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
    let events = body["events"].as_array().cloned().unwrap_or_default();
    received.transactions += 1;
    received.events += events.len();
    for event in events {
        if let Some(text) = event["content"]["body"].as_str() {
            received.arrived.insert(text.to_owned(), now);
        }
    }
    Ok(axum::Json(json!({})))
}

/// Waits until the receiver saw `body`; when it did.
async fn arrival(received: &Shared, body: &str) -> BenchResult<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(at) = received.lock().unwrap_or_else(|e| e.into_inner()).arrived.get(body) {
            return Ok(*at);
        }
        if Instant::now() > deadline {
            return Err(format!("the appservice never received {body:?}"));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

pub async fn appservice(
    user: &Session,
    listen: SocketAddr,
    as_token: &str,
    pings: usize,
    burst: usize,
    members: usize,
) -> BenchResult<Vec<Figure>> {
    let received: Shared = Arc::default();
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listen on {listen}: {e}"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The appservice's bot joins the user's public room: the room's events concern it now.
    let room = user.create_public_room().await?;
    let bot = Session {
        token: as_token.to_owned(),
        ..user.clone()
    };
    bot.json(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{room}"), json!({}))
        .await?;
    // More members: puppets the appservice registers (no password to hash) and joins.
    let whoami = bot
        .json(reqwest::Method::GET, "/_matrix/client/v3/account/whoami", Value::Null)
        .await?;
    let server_name = whoami["user_id"]
        .as_str()
        .and_then(|id| id.split_once(':'))
        .map(|(_, server)| server.to_owned());
    let server_name = server_name.ok_or("whoami answered no user ID")?;
    for n in 0..members {
        let name = format!("benchbot_{n}");
        let registration = json!({ "type": "m.login.application_service", "username": name, "inhibit_login": true });
        bot.json(reqwest::Method::POST, "/_matrix/client/v3/register", registration).await?;
        let join = format!("/_matrix/client/v3/join/{room}?user_id=%40{name}%3A{server_name}");
        bot.json(reqwest::Method::POST, &join, json!({})).await?;
    }

    let mut latencies = Vec::with_capacity(pings);
    for n in 0..pings {
        let body = format!("ping {n}");
        let sent = Instant::now();
        user.send_text(&room, &format!("ping{n}"), &body).await?;
        latencies.push(arrival(&received, &body).await? - sent);
    }
    latencies.sort();
    let mut figures = latency_figures("send → appservice", &latencies);

    // Delivery keeping up with 10 senders.
    let counts = transaction_counts(&received);
    let started = Instant::now();
    send_burst(user, &room, "live", burst).await?;
    let all_sent = started.elapsed();
    let delivered = last_arrival(&received, "live", burst).await? - started;
    figures.push(Figure {
        name: format!("{burst} messages sent (10 senders)"),
        value: burst as f64 / all_sent.as_secs_f64(),
        unit: "msg/s",
    });
    figures.extend(delivery_figures(&received, counts, "sent live", burst, delivered));

    // A backlog: the appservice is down while the burst is sent, then comes back and calls in
    // (which ends the server's backoff at once); full transactions drain it.
    received.lock().unwrap_or_else(|e| e.into_inner()).down = true;
    send_burst(user, &room, "backlog", burst).await?;
    let counts = transaction_counts(&received);
    received.lock().unwrap_or_else(|e| e.into_inner()).down = false;
    let started = Instant::now();
    bot.json(reqwest::Method::GET, "/_matrix/client/v3/account/whoami", Value::Null)
        .await?;
    let drained = last_arrival(&received, "backlog", burst).await? - started;
    figures.extend(delivery_figures(&received, counts, "backlog", burst, drained));
    Ok(figures)
}

/// Sends `burst` messages `<label> N` from 10 concurrent senders.
async fn send_burst(user: &Session, room: &str, label: &'static str, burst: usize) -> BenchResult<()> {
    from_senders(10, burst, |n| async move {
        user.send_text(room, &format!("{label}{n}"), &format!("{label} {n}")).await
    })
    .await
}

/// When the last of the messages `<label> 0..burst` arrived.
async fn last_arrival(received: &Shared, label: &str, burst: usize) -> BenchResult<Instant> {
    let mut last = None;
    for n in 0..burst {
        let at = arrival(received, &format!("{label} {n}")).await?;
        last = Some(last.map_or(at, |last: Instant| last.max(at)));
    }
    last.ok_or_else(|| "nothing was sent".to_owned())
}

/// How many transactions and events the receiver has taken so far.
fn transaction_counts(received: &Shared) -> (usize, usize) {
    let received = received.lock().unwrap_or_else(|e| e.into_inner());
    (received.transactions, received.events)
}

/// The delivery rate of `burst` events in `took`, and the events per transaction since `before`.
fn delivery_figures(received: &Shared, before: (usize, usize), what: &str, burst: usize, took: Duration) -> Vec<Figure> {
    let (transactions, events) = transaction_counts(received);
    vec![
        Figure {
            name: format!("{burst} messages {what}: delivered"),
            value: burst as f64 / took.as_secs_f64(),
            unit: "events/s",
        },
        Figure {
            name: format!("{burst} messages {what}: last delivery after"),
            value: millis(took),
            unit: "ms",
        },
        Figure {
            name: format!("{burst} messages {what}: events per transaction"),
            value: (events - before.1) as f64 / (transactions - before.0).max(1) as f64,
            unit: "events",
        },
    ]
}
