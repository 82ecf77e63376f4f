//! The memory workload: the server's resident memory idle, after a burst of messages, and with
//! many long polls waiting (read from `/proc/<pid>/status` of the server given by `--pid`).

use std::time::Duration;

use serde_json::{Value, json};

use super::sync::next_batch;
use super::{BenchResult, Cli, Figure, register};

/// A process's resident memory now and at its peak, in MiB (Linux `/proc/<pid>/status`).
fn resident_memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The server's resident memory now and at its peak, as figures named for `when`.
pub fn memory_figures(pid: u32, when: &str) -> Vec<Figure> {
    let Some((now, peak)) = resident_memory(pid) else {
        return Vec::new();
    };
    vec![
        Figure {
            name: format!("server RSS {when}"),
            value: now,
            unit: "MiB",
        },
        Figure {
            name: format!("server peak RSS {when}"),
            value: peak,
            unit: "MiB",
        },
    ]
}

/// Memory idle, after `message_count` messages from 10 senders, and with `polls` long polls
/// waiting.
pub async fn memory(cli: &Cli, message_count: usize, polls: usize) -> BenchResult<Vec<Figure>> {
    let pid = cli.pid.ok_or("the memory workload needs --pid")?;
    let mut figures = memory_figures(pid, "idle");
    let senders = 10;
    let mut users = Vec::new();
    for _ in 0..senders {
        users.push(register(cli).await?);
    }
    let room = users[0].create_public_room().await?;
    for user in &users[1..] {
        user.json(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{room}"), json!({}))
            .await?;
    }
    let mut tasks = Vec::new();
    for (index, user) in users.iter().enumerate() {
        let (user, room) = (user.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..message_count / senders {
                let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/m{index}-{n}");
                user.json(
                    reqwest::Method::PUT,
                    &path,
                    json!({ "msgtype": "m.text", "body": format!("message {n}") }),
                )
                .await?;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    figures.extend(memory_figures(pid, &format!("after {message_count} messages")));

    // Clients that joined the room wait in long polls; one message releases them all.
    let mut pollers = Vec::new();
    for _ in 0..polls {
        let user = register(cli).await?;
        user.json(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{room}"), json!({}))
            .await?;
        let since = next_batch(
            &user
                .json(
                    reqwest::Method::GET,
                    "/_matrix/client/v3/sync?timeout=0&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1%7D%7D%7D",
                    Value::Null,
                )
                .await?,
        )?;
        pollers.push((user, since));
    }
    let mut waiting = Vec::new();
    for (user, since) in pollers {
        waiting.push(tokio::spawn(async move {
            user.json(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/sync?since={since}&timeout=30000"),
                Value::Null,
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    figures.extend(memory_figures(pid, &format!("with {polls} long polls waiting")));
    users[0]
        .json(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/release"),
            json!({ "msgtype": "m.text", "body": "wake up" }),
        )
        .await?;
    for poll in waiting {
        poll.await.map_err(|e| e.to_string())??;
    }
    Ok(figures)
}
