//! The appservice workload: hearth-bench plays the appservice (a small HTTP receiver of
//! transactions on `--listen`, registered on the server under test by
//! `scripts/bench-appservice`), its bot joins a room, and a user's messages are timed from the
//! send to the transaction that carries them: one at a time for latency, then a burst from
//! 10 senders for the delivery rate and how many events each transaction carried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::put;
use serde_json::{Value, json};

use super::{BenchResult, Figure, Session, latency_figures, millis};

/// What the receiver saw: when each message body arrived, and the transactions' sizes.
#[derive(Default)]
struct Received {
    arrived: HashMap<String, Instant>,
    transactions: usize,
    events: usize,
}

type Shared = Arc<Mutex<Received>>;

/// `PUT /_matrix/app/v1/transactions/{txnId}`: records the message bodies it carries.
async fn transaction(State(received): State<Shared>, Path(_txn): Path<String>, axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    let now = Instant::now();
    let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
    let events = body["events"].as_array().cloned().unwrap_or_default();
    received.transactions += 1;
    received.events += events.len();
    for event in events {
        if let Some(text) = event["content"]["body"].as_str() {
            received.arrived.insert(text.to_owned(), now);
        }
    }
    axum::Json(json!({}))
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

pub async fn appservice(user: &Session, listen: SocketAddr, as_token: &str, pings: usize, burst: usize) -> BenchResult<Vec<Figure>> {
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

    let mut latencies = Vec::with_capacity(pings);
    for n in 0..pings {
        let body = format!("ping {n}");
        let sent = Instant::now();
        user.send_text(&room, &format!("ping{n}"), &body).await?;
        latencies.push(arrival(&received, &body).await? - sent);
    }
    latencies.sort();

    let (transactions_before, events_before) = {
        let received = received.lock().unwrap_or_else(|e| e.into_inner());
        (received.transactions, received.events)
    };
    let started = Instant::now();
    let senders = 10;
    let tasks: Vec<_> = (0..senders)
        .map(|sender| {
            let (user, room) = (user.clone(), room.clone());
            tokio::spawn(async move {
                for n in (sender..burst).step_by(senders) {
                    user.send_text(&room, &format!("burst{n}"), &format!("burst {n}")).await?;
                }
                BenchResult::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let all_sent = started.elapsed();
    let mut last = started;
    for n in 0..burst {
        last = last.max(arrival(&received, &format!("burst {n}")).await?);
    }
    let delivered = last - started;
    let received = received.lock().unwrap_or_else(|e| e.into_inner());
    let transactions = received.transactions - transactions_before;
    let events = received.events - events_before;

    let mut figures = latency_figures("send → appservice", &latencies);
    figures.extend([
        Figure {
            name: format!("{burst} messages sent (10 senders)"),
            value: burst as f64 / all_sent.as_secs_f64(),
            unit: "msg/s",
        },
        Figure {
            name: format!("{burst} messages delivered to the appservice"),
            value: burst as f64 / delivered.as_secs_f64(),
            unit: "events/s",
        },
        Figure {
            name: "first send to last delivery".into(),
            value: millis(delivered),
            unit: "ms",
        },
        Figure {
            name: "events per transaction in the burst".into(),
            value: events as f64 / transactions.max(1) as f64,
            unit: "events",
        },
    ]);
    Ok(figures)
}
