//! The `populate` workload: fills a server as years of a big group would, U users in R public
//! rooms (user i joins room i mod R) and M messages sent by 20 senders at once, so start-up
//! and backups can be measured on a big store (`scripts/bench-startup`). Reports how fast it
//! registered, joined and sent.

use std::time::Instant;

use super::community::in_parallel;
use super::{BenchResult, Cli, Figure, Session, from_senders, register};

/// Concurrent senders.
const SENDERS: usize = 20;

/// Registers `users` users into `rooms` rooms and sends `messages` messages.
pub async fn populate(cli: &Cli, users: usize, rooms: usize, messages: usize) -> BenchResult<Vec<Figure>> {
    let rooms = rooms.clamp(1, users.max(1));
    let started = Instant::now();
    // The first `rooms` users create a room each and send into it; the others only join.
    let creators: Vec<Session> = in_parallel(rooms, |_| register(cli)).await?;
    let room_ids: Vec<String> = in_parallel(rooms, |i| creators[i].create_public_room()).await?;
    let joined = in_parallel(users - rooms, |i| {
        let room = room_ids[(rooms + i) % rooms].clone();
        async move {
            // The session (and its connection) ends once it joined.
            let member = register(cli).await?;
            member
                .json(
                    reqwest::Method::POST,
                    &format!("/_matrix/client/v3/join/{room}"),
                    serde_json::Value::Null,
                )
                .await
        }
    })
    .await?;
    let setup = started.elapsed();

    let started = Instant::now();
    from_senders(SENDERS, messages, |n| {
        let room = n % room_ids.len();
        let (creator, room_id) = (&creators[room], &room_ids[room]);
        async move {
            let body = format!("message {n} of the populated store");
            creator.send_text(room_id, &format!("p{n}"), &body).await
        }
    })
    .await?;
    let sending = started.elapsed();
    Ok(vec![
        Figure {
            name: format!("{} users registered and joined into {rooms} rooms", rooms + joined.len()),
            value: setup.as_secs_f64(),
            unit: "s",
        },
        Figure {
            name: format!("{messages} messages sent by {SENDERS} senders"),
            value: messages as f64 / sending.as_secs_f64(),
            unit: "messages/s",
        },
    ])
}
