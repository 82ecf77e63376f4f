//! The mail workload: requests that each queue a mail (`/account/3pid/email/requestToken`),
//! their latency, and how fast the outbox drains into the SMTP server, which keeps what it
//! receives in the Maildir given (`scripts/bench-mail` runs aiosmtpd for it).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{BenchResult, Figure, Session, latency_figures, timed};

/// How many mails the Maildir has received.
fn delivered(maildir: &Path) -> usize {
    std::fs::read_dir(maildir.join("new")).map_or(0, |dir| dir.count())
}

/// Sends `requests` confirmation requests one after another, then waits for every mail.
pub async fn mail(session: &Session, requests: usize, maildir: &Path) -> BenchResult<Vec<Figure>> {
    let before = delivered(maildir);
    let started = Instant::now();
    let (times, _) = timed(requests, |n| {
        let body = json!({ "client_secret": format!("bench{n}"), "email": format!("bench{n}@example.org"), "send_attempt": 1 });
        session.json(reqwest::Method::POST, "/_matrix/client/v3/account/3pid/email/requestToken", body)
    })
    .await?;
    let queued = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while delivered(maildir) < before + requests {
        if Instant::now() > deadline {
            return Err(format!("only {} of {requests} mails arrived", delivered(maildir) - before));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    let mut figures = latency_figures("requestToken (queues a mail)", &times);
    figures.push(Figure {
        name: format!("{requests} mails queued"),
        value: requests as f64 / queued.as_secs_f64(),
        unit: "mails/s",
    });
    figures.push(Figure {
        name: format!("{requests} mails delivered to the SMTP server"),
        value: requests as f64 / drained.as_secs_f64(),
        unit: "mails/s",
    });
    figures.push(Figure {
        name: "first request to last mail delivered".into(),
        value: drained.as_secs_f64() * 1000.0,
        unit: "ms",
    });
    Ok(figures)
}
