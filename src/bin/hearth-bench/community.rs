//! The community workload: a group's whole server at once. U users register (16 at a time), a
//! space of C channels is made, each user joins the space and 5–20 of its channels, every
//! user keeps a long poll open (half `/sync`, half sliding sync), S of them send at a steady
//! total rate for a while, and a third of the readers send a read receipt for what they
//! receive (in every channel, or with `--receipts-in-open-channel` only in the one they have
//! open, as a client shows one room at a time). Reports messages/s sustained, delivery latency
//! to every member, missed deliveries (never arrived, or arrived only after a poll slept to its
//! timeout), the server's CPU and memory and its open connections.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::SliceRandom;
use serde::Deserialize;
use serde_json::{Value, json};

use super::memory::memory_figures;
use super::sync::{SLIDING_SYNC, next_batch, pos_of};
use super::{BenchResult, Cli, Figure, Session, latency_figures, process_cpu, quantile_ms, register};

/// Requests in flight while registering and joining.
const SETUP_CONCURRENCY: usize = 16;
/// The timeout of every long poll.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long readers keep polling after the last message, for the last deliveries.
const GRACE: Duration = Duration::from_secs(5);

/// The shape of the community.
pub struct Community {
    pub users: usize,
    pub channels: usize,
    pub senders: usize,
    /// Messages per second, all senders together.
    pub rate: f64,
    pub duration: Duration,
    /// Receipts only in each reader's open channel (its first), not in every channel.
    pub receipts_in_open_channel: bool,
}

/// What the readers saw: each delivery's latency, and which (message, reader) pairs arrived.
#[derive(Default)]
struct Deliveries {
    latencies: Vec<Duration>,
    late: usize,
    seen: HashSet<(String, usize)>,
}

pub async fn community(cli: &Cli, shape: &Community) -> BenchResult<Vec<Figure>> {
    let mut figures = Vec::new();
    let started = Instant::now();
    let users = in_parallel(shape.users, |_| register(cli)).await?;
    figures.push(Figure {
        name: format!("{} users registered, {SETUP_CONCURRENCY} at a time", shape.users),
        value: shape.users as f64 / started.elapsed().as_secs_f64(),
        unit: "users/s",
    });
    if let Some(pid) = cli.pid {
        figures.extend(memory_figures(pid, "after the registrations"));
    }

    // The space and its channels, then everyone's memberships.
    let owner = &users[0];
    let space = owner
        .json(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            json!({ "preset": "public_chat", "name": "Community", "creation_content": { "type": "m.space" } }),
        )
        .await?["room_id"]
        .as_str()
        .ok_or("no space created")?
        .to_owned();
    let mut channels = Vec::new();
    for n in 0..shape.channels {
        let channel = owner
            .json(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                json!({ "preset": "public_chat", "name": format!("channel {n}") }),
            )
            .await?["room_id"]
            .as_str()
            .ok_or("no channel created")?
            .to_owned();
        let child = format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{channel}");
        owner.json(reqwest::Method::PUT, &child, json!({ "via": ["localhost"] })).await?;
        channels.push(channel);
    }
    let memberships: Vec<Vec<usize>> = (0..shape.users)
        .map(|user| {
            let mut rng = rand::thread_rng();
            let mut all: Vec<usize> = (0..shape.channels).collect();
            all.shuffle(&mut rng);
            let count = if user == 0 {
                shape.channels
            } else {
                rng.gen_range(5..=20).min(shape.channels)
            };
            all.truncate(count);
            all
        })
        .collect();
    let started = Instant::now();
    // Round by round (every user's first join, then every user's second, …), so the joins in
    // flight are different users' and each client keeps one connection, as a real one would.
    let rooms_of = |user: usize| std::iter::once(space.clone()).chain(memberships[user].iter().map(|&c| channels[c].clone()));
    let joins: Vec<(usize, String)> = (0..=shape.channels)
        .flat_map(|round| (1..shape.users).filter_map(move |user| rooms_of(user).nth(round).map(|room| (user, room))))
        .collect();
    in_parallel(joins.len(), |n| {
        let (user, room) = &joins[n];
        let (session, path) = (&users[*user], format!("/_matrix/client/v3/join/{room}"));
        async move { session.json(reqwest::Method::POST, &path, json!({})).await }
    })
    .await?;
    figures.push(Figure {
        name: format!("{} joins, {SETUP_CONCURRENCY} at a time", joins.len()),
        value: joins.len() as f64 / started.elapsed().as_secs_f64(),
        unit: "joins/s",
    });

    // Every user polls: even ones /sync, odd ones sliding sync; every third sends receipts.
    let clock = Instant::now();
    let deliveries = Arc::new(Mutex::new(Deliveries::default()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut readers = Vec::new();
    for (index, user) in users.iter().enumerate() {
        let reader = Reader {
            index,
            session: user.clone(),
            sliding: index % 2 == 1,
            receipts: match index % 3 {
                0 if shape.receipts_in_open_channel => Receipts::In(memberships[index].first().map(|&c| channels[c].clone())),
                0 => Receipts::Everywhere,
                _ => Receipts::Never,
            },
            clock,
            deliveries: deliveries.clone(),
        };
        readers.push(tokio::spawn(reader.run(stop.clone(), ready.clone())));
    }
    // Every reader has had its first response (an initial sync) before anyone sends.
    let started = Instant::now();
    while ready.load(std::sync::atomic::Ordering::SeqCst) < shape.users {
        if started.elapsed() > Duration::from_secs(600) {
            return Err("the readers' first syncs took over 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    figures.push(Figure {
        name: format!("first syncs of all {} readers, at once", shape.users),
        value: started.elapsed().as_secs_f64(),
        unit: "s",
    });
    // Let the readers' long polls reach the server.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The server's and the load generator's CPU while sending.
    let measured = [("server", cli.pid), ("load generator", Some(std::process::id()))];
    let cpu_before = measured.map(|(_, pid)| pid.and_then(process_cpu));
    let window = Instant::now();
    let interval = Duration::from_secs_f64(shape.senders as f64 / shape.rate);
    let sender_count = shape.senders as f64;
    let mut senders = Vec::new();
    for (index, user) in users.iter().enumerate().take(shape.senders) {
        let (user, rooms) = (
            user.clone(),
            memberships[index].iter().map(|&c| channels[c].clone()).collect::<Vec<_>>(),
        );
        let duration = shape.duration;
        senders.push(tokio::spawn(async move {
            // Spread the senders over the interval, then one message per interval each.
            tokio::time::sleep(interval.mul_f64(index as f64 / sender_count)).await;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut sent = Vec::new();
            let started = Instant::now();
            let mut n = 0;
            while started.elapsed() < duration {
                ticker.tick().await;
                let room = rooms[rand::thread_rng().gen_range(0..rooms.len())].clone();
                let body = format!("c{index}-{n} {}", clock.elapsed().as_micros());
                let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/c{n}");
                user.json(reqwest::Method::PUT, &path, json!({ "msgtype": "m.text", "body": body }))
                    .await?;
                sent.push((format!("c{index}-{n}"), room));
                n += 1;
            }
            Ok::<_, String>(sent)
        }));
    }
    let mut sent = Vec::new();
    for task in senders {
        sent.extend(task.await.map_err(|e| e.to_string())??);
    }
    let sending = window.elapsed();
    let cpu: Vec<(&str, Option<f64>)> = measured
        .iter()
        .zip(cpu_before)
        .map(|(&(name, pid), before)| {
            let used = before.zip(pid.and_then(process_cpu)).map(|(before, after)| after - before);
            (name, used.map(|used| used / window.elapsed().as_secs_f64()))
        })
        .collect();
    let connections = cli.pid.map(open_sockets);
    tokio::time::sleep(GRACE).await;
    stop.notify_waiters();
    for reader in readers {
        reader.abort();
    }

    let members_of = |room: &str| -> Vec<usize> {
        let channel = channels.iter().position(|c| c == room);
        (0..shape.users)
            .filter(|&user| channel.is_some_and(|c| memberships[user].contains(&c)))
            .collect()
    };
    let deliveries = deliveries.lock().unwrap_or_else(|e| e.into_inner());
    let expected: usize = sent.iter().map(|(_, room)| members_of(room).len()).sum();
    let arrived = sent
        .iter()
        .flat_map(|(id, room)| members_of(room).into_iter().map(move |user| (id.clone(), user)))
        .filter(|pair| deliveries.seen.contains(pair))
        .count();
    let mut latencies = deliveries.latencies.clone();
    latencies.sort();
    figures.extend([
        Figure {
            name: format!("messages/s sustained ({} senders, {} s)", shape.senders, shape.duration.as_secs()),
            value: sent.len() as f64 / sending.as_secs_f64(),
            unit: "messages/s",
        },
        Figure {
            name: format!(
                "deliveries expected (messages x members: {} x ~{})",
                sent.len(),
                expected / sent.len().max(1)
            ),
            value: expected as f64,
            unit: "deliveries",
        },
        Figure {
            name: "missed: never delivered".into(),
            value: (expected - arrived) as f64,
            unit: "deliveries",
        },
        Figure {
            name: format!("missed: delivered after a poll slept {} s", POLL_TIMEOUT.as_secs()),
            value: deliveries.late as f64,
            unit: "deliveries",
        },
        Figure {
            name: "delivery to every member max".into(),
            value: quantile_ms(&latencies, 1.0),
            unit: "ms",
        },
    ]);
    figures.extend(latency_figures("delivery to every member", &latencies));
    for (name, share) in cpu {
        if let Some(share) = share {
            figures.push(Figure {
                name: format!("{name} CPU while sending (of one core)"),
                value: share * 100.0,
                unit: "%",
            });
        }
    }
    if let Some(connections) = connections {
        figures.push(Figure {
            name: "server's open connections while sending".into(),
            value: connections as f64,
            unit: "sockets",
        });
    }
    Ok(figures)
}

/// Runs `count` requests, [`SETUP_CONCURRENCY`] at a time; their results in order.
pub(super) async fn in_parallel<T, F, Fut>(count: usize, request: F) -> BenchResult<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = BenchResult<T>>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter((0..count).map(request))
        .buffered(SETUP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Where a reader sends read receipts.
enum Receipts {
    Never,
    /// In every room it receives messages in.
    Everywhere,
    /// Only in the room it has open.
    In(Option<String>),
}

/// One member's client: a long poll after another, noting every message it receives.
struct Reader {
    index: usize,
    session: Session,
    sliding: bool,
    receipts: Receipts,
    clock: Instant,
    deliveries: Arc<Mutex<Deliveries>>,
}

impl Reader {
    async fn run(self, stop: Arc<tokio::sync::Notify>, ready: Arc<std::sync::atomic::AtomicUsize>) -> BenchResult<()> {
        let stopped = stop.notified();
        tokio::pin!(stopped);
        let mut token = self.first_token().await?;
        ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        loop {
            let polled = Instant::now();
            let (next, rooms) = tokio::select! {
                _ = &mut stopped => return Ok(()),
                answer = self.poll(&token) => answer?,
            };
            let slept = polled.elapsed() >= POLL_TIMEOUT;
            token = next;
            let received = self.note(rooms, slept);
            let read = received.into_iter().filter(|(room, _)| match &self.receipts {
                Receipts::Never => false,
                Receipts::Everywhere => true,
                Receipts::In(open) => open.as_ref() == Some(room),
            });
            for (room, event_id) in read {
                let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}");
                self.session.json(reqwest::Method::POST, &path, json!({})).await?;
            }
        }
    }

    /// The token to poll from: an initial sync, or a sliding sync connection's first response.
    async fn first_token(&self) -> BenchResult<String> {
        if self.sliding {
            pos_of(&self.session.json(reqwest::Method::POST, SLIDING_SYNC, sliding_request()).await?)
        } else {
            let path = format!("/_matrix/client/v3/sync?timeout=0&filter={}", sync_filter(1));
            next_batch(&self.session.json(reqwest::Method::GET, &path, Value::Null).await?)
        }
    }

    /// The next answer after `token`: its token and each room's new timeline events (read
    /// as only what the workload looks at, as a client would skip what it does not show).
    async fn poll(&self, token: &str) -> BenchResult<(String, Vec<(String, Vec<TimelineEvent>)>)> {
        let timeout = POLL_TIMEOUT.as_millis();
        if self.sliding {
            let path = format!("{SLIDING_SYNC}?pos={token}&timeout={timeout}");
            let (_, answer): (_, SlidingAnswer) = self.session.timed_json(reqwest::Method::POST, &path, sliding_request()).await?;
            let rooms = answer.rooms.into_iter().map(|(id, room)| (id, room.timeline)).collect();
            Ok((answer.pos, rooms))
        } else {
            let path = format!("/_matrix/client/v3/sync?since={token}&timeout={timeout}&filter={}", sync_filter(50));
            let (_, answer): (_, SyncAnswer) = self.session.timed_json(reqwest::Method::GET, &path, Value::Null).await?;
            let rooms = answer.rooms.join.into_iter().map(|(id, room)| (id, room.timeline.events)).collect();
            Ok((answer.next_batch, rooms))
        }
    }

    /// Notes the workload's messages in an answer's rooms; returns each room's last new event.
    fn note(&self, rooms: Vec<(String, Vec<TimelineEvent>)>, slept: bool) -> Vec<(String, String)> {
        let now = self.clock.elapsed();
        let mut deliveries = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = Vec::new();
        for (room, events) in rooms {
            for event in &events {
                let Some((id, sent)) = event.content.body.as_deref().and_then(|body| body.split_once(' ')) else {
                    continue;
                };
                let Ok(sent) = sent.parse::<u64>() else { continue };
                if id.starts_with('c') && deliveries.seen.insert((id.to_owned(), self.index)) {
                    deliveries.latencies.push(now.saturating_sub(Duration::from_micros(sent)));
                    deliveries.late += usize::from(slept);
                }
            }
            if let Some(event_id) = events.into_iter().next_back().and_then(|event| event.event_id) {
                last.push((room, event_id));
            }
        }
        last
    }
}

/// What a reader reads of a `/sync` answer.
#[derive(Deserialize)]
struct SyncAnswer {
    next_batch: String,
    #[serde(default)]
    rooms: SyncRooms,
}

#[derive(Default, Deserialize)]
struct SyncRooms {
    #[serde(default)]
    join: HashMap<String, SyncRoom>,
}

#[derive(Deserialize)]
struct SyncRoom {
    #[serde(default)]
    timeline: SyncTimeline,
}

#[derive(Default, Deserialize)]
struct SyncTimeline {
    #[serde(default)]
    events: Vec<TimelineEvent>,
}

/// What a reader reads of a sliding sync answer.
#[derive(Deserialize)]
struct SlidingAnswer {
    pos: String,
    #[serde(default)]
    rooms: HashMap<String, SlidingRoom>,
}

#[derive(Deserialize)]
struct SlidingRoom {
    #[serde(default)]
    timeline: Vec<TimelineEvent>,
}

/// A timeline event's ID and body.
#[derive(Deserialize)]
struct TimelineEvent {
    event_id: Option<String>,
    #[serde(default)]
    content: EventBody,
}

#[derive(Default, Deserialize)]
struct EventBody {
    body: Option<String>,
}

/// Element's inline `/sync` filter: members lazily loaded, `limit` timeline events.
fn sync_filter(limit: usize) -> String {
    format!("{{\"room\":{{\"state\":{{\"lazy_load_members\":true}},\"timeline\":{{\"limit\":{limit},\"lazy_load_members\":true}}}}}}")
}

/// A sliding-sync request for every room of the user with its new messages.
fn sliding_request() -> Value {
    json!({
        "conn_id": "community",
        "lists": { "all": { "ranges": [[0, 49]], "timeline_limit": 50, "required_state": [["m.room.name", ""]] } },
        "extensions": { "receipts": { "enabled": true } }
    })
}

/// How many sockets a process has open.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| {
        entries
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    })
}
