//! `hearth-bench`: a load tool that drives any homeserver over HTTP with one workload and
//! prints a table (or `--json`). It registers its own users, by open registration or with a
//! registration token.
//!
//! Workloads:
//! - `media`: upload and download throughput of a large file, thumbnail generation and
//!   cached-thumbnail time.
//! - `messages`: K concurrent senders × M messages into one room (messages/s, p50/p99 send
//!   latency), then the room's history paged back 100 events at a time.
//! - `sync`: end-to-end delivery latency (send → the other user's long-poll returns it, with
//!   missed wake-ups counted), and incremental sync time for users in 1, 100 and 1,000 rooms.
//! - `sliding`: Simplified Sliding Sync (MSC4186): the first response for a user in R rooms,
//!   and delivery latency through a long-polling sliding sync (both in `sync.rs`).
//! - `accounts`: register, login, createRoom and join latency.
//! - `memory` (needs `--pid`): the server's resident memory idle, after 10,000 messages and
//!   with 100 long-polling clients.
//! - `federation` (`--peer URL`): delivery from this server to a long-polling user of the peer,
//!   a burst's throughput, and joining a big room over federation (`federation.rs`).
//! - `mail` (`--maildir DIR`, the server under test mailing to an SMTP server that delivers
//!   there): requests that queue a mail, and how fast the outbox drains (`mail.rs`).
//! - `community`: a group's whole server at once: 1,000 users in a space of 20 channels, all
//!   long-polling (half `/sync`, half sliding sync), 50 sending at a steady rate, a third
//!   sending receipts (`community.rs`).
//! - `search`: rooms filled with 100,000 messages, then one-word and three-word searches
//!   timed, and the index's size from the server's metrics (`search.rs`).
//! - `appservice` (`scripts/bench-appservice`): the tool plays a registered appservice and
//!   times a user's messages from the send to the transaction carrying them, one at a time and
//!   in a burst (`appservice.rs`).
//! - `populate`: 10,000 users in 100 rooms and 1,000,000 messages, a big store for start-up and
//!   backup measurements (`populate.rs`, `scripts/bench-startup`).
//!
//! Every run also reports the load generator's own CPU use, and with `--pid` the server's
//! resident memory and its peak (Linux `/proc`).

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rand::RngCore;
use serde::Serialize;
use serde_json::{Value, json};

mod appservice;
mod community;
mod federation;
mod mail;
mod media;
mod memory;
mod populate;
mod search;
mod sync;

/// Drives a homeserver with a workload and reports what it measured.
#[derive(Parser)]
#[command(name = "hearth-bench", version)]
struct Cli {
    /// The homeserver's client API base URL.
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    url: String,
    /// Registration token, for servers whose registration needs one.
    #[arg(long)]
    registration_token: Option<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// The server's process ID, to report its resident memory (Linux).
    #[arg(long)]
    pid: Option<u32>,
    /// Extra PEM certificates to trust for https URLs (servers with a private CA).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// The client API base URL of another process of the same server (on a shared database);
    /// repeatable. New users go to --url and these in turn, so a sender and a receiver made
    /// one after the other are on different processes.
    #[arg(long = "process-url")]
    process_urls: Vec<String>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// Delivery latency through long-polling sync, and incremental sync cost by room count.
    Sync {
        /// How many messages are timed through a long poll.
        #[arg(long, default_value_t = 1000)]
        pings: usize,
        /// Room counts of the incremental sync measurement.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        rooms: Vec<usize>,
    },
    /// Simplified Sliding Sync: first response by room count, and delivery latency.
    Sliding {
        /// How many messages are timed through a long poll.
        #[arg(long, default_value_t = 1000)]
        pings: usize,
        /// How many rooms the user of the first-response measurement is in.
        #[arg(long, default_value_t = 1000)]
        rooms: usize,
    },
    /// Register, login, createRoom and join latency.
    Accounts {
        /// How many users register and log in.
        #[arg(long, default_value_t = 50)]
        users: usize,
    },
    /// The server's memory idle, after many messages, and with many long polls (needs --pid).
    Memory {
        /// How many messages are sent (by 10 senders).
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        /// How many clients long-poll at once.
        #[arg(long, default_value_t = 100)]
        polls: usize,
    },
    /// Concurrent senders into one room, then back-pagination of its history.
    Messages {
        /// How many users send at once.
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// How many messages each sends.
        #[arg(long, default_value_t = 200)]
        messages: usize,
    },
    /// Federation between the server at --url and a peer: delivery latency from a sender on
    /// the first to a long-polling receiver on the peer, and throughput of a burst.
    Federation {
        /// The peer's client API base URL; its users join the room through the first server.
        #[arg(long)]
        peer: String,
        /// How many messages are timed through a long poll on the peer.
        #[arg(long, default_value_t = 1000)]
        pings: usize,
        /// How many messages the burst sends.
        #[arg(long, default_value_t = 2000)]
        burst: usize,
        /// Members of the big room a peer's user then joins (0: no big-room join).
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Events of history in that room.
        #[arg(long, default_value_t = 5000)]
        history: usize,
        /// Users of the peer whose keys are queried and claimed from the first server (0: none).
        #[arg(long, default_value_t = 10)]
        remote_users: usize,
        /// Size in MiB of the file of the first server downloaded on the peer (0: none).
        #[arg(long, default_value_t = 16)]
        remote_media_mib: usize,
    },
    /// Mail: requests that each queue a mail, and how fast the outbox drains into an SMTP
    /// server (the server under test needs `[email]`; `scripts/bench-mail` sets it up).
    Mail {
        /// How many mails are queued.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// The Maildir the SMTP server delivers into, to count what arrived.
        #[arg(long)]
        maildir: std::path::PathBuf,
    },
    /// Delivery to an appservice this tool plays (registered on the server with `as_token` and
    /// a url pointing at --listen; `scripts/bench-appservice` sets it up).
    Appservice {
        #[arg(long, default_value = "127.0.0.1:18010")]
        listen: std::net::SocketAddr,
        #[arg(long)]
        as_token: String,
        /// How many messages are timed one at a time.
        #[arg(long, default_value_t = 500)]
        pings: usize,
        /// How many messages the burst sends.
        #[arg(long, default_value_t = 5000)]
        burst: usize,
        /// Puppets of the appservice joined to the room before the measurements.
        #[arg(long, default_value_t = 0)]
        members: usize,
    },
    /// A whole community at once: many users polling, some sending, receipts (best with --pid).
    Community {
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 20)]
        channels: usize,
        #[arg(long, default_value_t = 50)]
        senders: usize,
        /// Messages per second, all senders together.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// How long the senders send, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Readers send receipts only in the one channel they have open, as a client shows one
        /// room at a time, instead of in every channel with news.
        #[arg(long)]
        receipts_in_open_channel: bool,
    },
    /// Search latency over many messages, and the index's size.
    Search {
        /// How many messages fill the rooms first.
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// How many searches of each kind are timed.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// The server's metrics URL, to read the index's size.
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Fills the server with many users, rooms and messages (for start-up and backup
    /// measurements of a big store).
    Populate {
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
    },
    /// Media upload and download throughput and thumbnail time.
    Media {
        /// Size of the uploaded file in MiB.
        #[arg(long, default_value_t = 10)]
        size_mib: usize,
        /// How many uploads and downloads to time.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Side of the square source image thumbnailed, in pixels.
        #[arg(long, default_value_t = 2000)]
        image_side: u32,
    },
}

/// One measured figure.
#[derive(Serialize)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
}

/// A logged-in user of the server under test.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    url: String,
    token: String,
    /// The localpart, which logs in again with [`PASSWORD`].
    name: String,
}

/// The password of every user the tool registers.
const PASSWORD: &str = "bench-password";

type BenchResult<T> = Result<T, String>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // reqwest is built without a default TLS provider; https URLs use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let cpu_before = process_cpu(std::process::id());
    let figures = match run(&cli).await {
        Ok(mut figures) => {
            // The load generator must not be the bottleneck: its own CPU, in % of one core.
            if let (Some(before), Some(after)) = (cpu_before, process_cpu(std::process::id())) {
                figures.push(Figure {
                    name: "load generator CPU, whole run (of one core)".into(),
                    value: 100.0 * (after - before) / started.elapsed().as_secs_f64(),
                    unit: "%",
                });
            }
            if let Some(pid) = cli.pid {
                figures.extend(memory::memory_figures(pid, "at the end"));
            }
            figures
        }
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&figures).unwrap_or_default());
    } else {
        println!("{:<48} {:>12}  unit", "figure", "value");
        for figure in &figures {
            println!("{:<48} {:>12.2}  {}", figure.name, figure.value, figure.unit);
        }
    }
    std::process::ExitCode::SUCCESS
}

async fn run(cli: &Cli) -> BenchResult<Vec<Figure>> {
    match cli.workload {
        Workload::Media {
            size_mib,
            rounds,
            image_side,
        } => media::media(&register(cli).await?, size_mib, rounds, image_side).await,
        Workload::Messages { senders, messages: count } => messages(cli, senders, count).await,
        Workload::Sync { pings, ref rooms } => sync::sync(cli, pings, rooms).await,
        Workload::Sliding { pings, rooms } => sync::sliding(cli, pings, rooms).await,
        Workload::Accounts { users } => accounts(cli, users).await,
        Workload::Mail { requests, ref maildir } => mail::mail(&register(cli).await?, requests, maildir).await,
        Workload::Community {
            users,
            channels,
            senders,
            rate,
            seconds,
            receipts_in_open_channel,
        } => {
            let shape = community::Community {
                users,
                channels,
                senders,
                rate,
                duration: Duration::from_secs(seconds),
                receipts_in_open_channel,
            };
            community::community(cli, &shape).await
        }
        Workload::Search {
            messages,
            queries,
            ref metrics,
        } => search::search(cli, messages, queries, metrics.as_deref()).await,
        Workload::Memory { messages, polls } => memory::memory(cli, messages, polls).await,
        Workload::Appservice {
            listen,
            ref as_token,
            pings,
            burst,
            members,
        } => appservice::appservice(&register(cli).await?, listen, as_token, pings, burst, members).await,
        Workload::Populate { users, rooms, messages } => populate::populate(cli, users, rooms, messages).await,
        Workload::Federation {
            ref peer,
            pings,
            burst,
            members,
            history,
            remote_users,
            remote_media_mib,
        } => {
            let mut figures = federation::delivery(cli, peer, pings, burst).await?;
            if members > 0 {
                figures.extend(federation::big_room_join(cli, peer, members, history).await?);
            }
            if remote_users > 0 {
                figures.extend(federation::remote_keys(cli, peer, remote_users, 50).await?);
            }
            if remote_media_mib > 0 {
                figures.extend(federation::remote_media(cli, peer, remote_media_mib).await?);
            }
            Ok(figures)
        }
    }
}

/// Registers a fresh user with a random name, on --url or, in turn, the --process-url ones.
async fn register(cli: &Cli) -> BenchResult<Session> {
    static REGISTERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let turn = REGISTERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (cli.process_urls.len() + 1);
    let url = if turn == 0 { &cli.url } else { &cli.process_urls[turn - 1] };
    register_at(cli, url).await
}

/// Registers a fresh user with a random name on the server at `base_url`.
async fn register_at(cli: &Cli, base_url: &str) -> BenchResult<Session> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = &cli.ca {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for certificate in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let http = builder.build().map_err(|e| e.to_string())?;
    let name = format!("bench{}", rand::thread_rng().next_u32());
    let url = format!("{base_url}/_matrix/client/v3/register");
    let mut body = json!({ "username": name, "password": PASSWORD, "inhibit_login": false });
    // The first request opens a user-interactive session; the second completes its stage.
    let first: Value = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let session = first["session"].clone();
    body["auth"] = match &cli.registration_token {
        Some(token) => json!({ "type": "m.login.registration_token", "token": token, "session": session }),
        None => json!({ "type": "m.login.dummy", "session": session }),
    };
    let response = http.post(&url).json(&body).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let registered: Value = response.json().await.map_err(|e| e.to_string())?;
    let token = registered["access_token"]
        .as_str()
        .ok_or_else(|| format!("registration failed ({status}): {registered}"))?
        .to_owned();
    Ok(Session {
        http,
        url: base_url.to_owned(),
        token,
        name,
    })
}

impl Session {
    /// Creates a public room; returns its ID.
    async fn create_public_room(&self) -> BenchResult<String> {
        let created = self
            .json(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                json!({ "preset": "public_chat" }),
            )
            .await?;
        Ok(created["room_id"].as_str().ok_or("createRoom returned no room_id")?.to_owned())
    }

    /// The same user logged in again: a new device and access token.
    async fn login_again(&self) -> BenchResult<Session> {
        let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": self.name }, "password": PASSWORD });
        let response = self
            .http
            .post(format!("{}/_matrix/client/v3/login", self.url))
            .json(&login)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        let token = answer["access_token"]
            .as_str()
            .ok_or_else(|| format!("login failed ({status}): {answer}"))?;
        Ok(Session {
            token: token.to_owned(),
            ..self.clone()
        })
    }

    /// Sends a text message with transaction ID `txn`.
    async fn send_text(&self, room: &str, txn: &str, body: &str) -> BenchResult<Value> {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
        self.json(reqwest::Method::PUT, &path, json!({ "msgtype": "m.text", "body": body }))
            .await
    }

    /// Sends a request with a JSON body (none when `body` is null) and returns the JSON answer.
    async fn json(&self, method: reqwest::Method, path: &str, body: Value) -> BenchResult<Value> {
        Ok(self.timed_json(method, path, body).await?.1)
    }

    /// [`Session::json`], with the time until the answer had arrived in full (what the server
    /// costs a client, whose own parsing of the answer comes after), the answer read as `T`.
    async fn timed_json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> BenchResult<(Duration, T)> {
        let started = Instant::now();
        let mut request = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        let arrived = started.elapsed();
        if !status.is_success() {
            return Err(format!("{path}: {status} {}", String::from_utf8_lossy(&bytes)));
        }
        let body = serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))?;
        Ok((arrived, body))
    }

    async fn upload(&self, content_type: &str, bytes: Vec<u8>) -> BenchResult<String> {
        let response = self
            .http
            .post(format!("{}/_matrix/media/v3/upload", self.url))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        body["content_uri"]
            .as_str()
            .map(|uri| uri.trim_start_matches("mxc://").to_owned())
            .ok_or_else(|| format!("upload failed: {body}"))
    }

    async fn get_bytes(&self, path: &str) -> BenchResult<usize> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("GET {path}: {}", response.status()));
        }
        Ok(response.bytes().await.map_err(|e| e.to_string())?.len())
    }
}

/// The CPU time a process has used, all its threads, in seconds (Linux `/proc/<pid>/stat`, in
/// clock ticks of 1/100 s).
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Runs rounds `0..count` from `senders` loops at once: loop `s` runs rounds `s`,
/// `s + senders`, … one after another.
async fn from_senders<T, F, Fut>(senders: usize, count: usize, round: F) -> BenchResult<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = BenchResult<T>>,
{
    use futures_util::StreamExt;
    let round = &round;
    futures_util::stream::iter(0..senders)
        .map(|sender| async move {
            for n in (sender..count).step_by(senders) {
                round(n).await?;
            }
            BenchResult::Ok(())
        })
        .buffer_unordered(senders)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Times `count` rounds of a request; returns the sorted durations and each round's result.
async fn timed<T, F, Fut>(count: usize, round: F) -> BenchResult<(Vec<Duration>, Vec<T>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = BenchResult<T>>,
{
    let mut times = Vec::with_capacity(count);
    let mut results = Vec::with_capacity(count);
    for n in 0..count {
        let started = Instant::now();
        results.push(round(n).await?);
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times, results))
}

fn latency_figures(what: &str, times: &[Duration]) -> Vec<Figure> {
    vec![
        Figure {
            name: format!("{what} latency p50"),
            value: quantile_ms(times, 0.5),
            unit: "ms",
        },
        Figure {
            name: format!("{what} latency p99"),
            value: quantile_ms(times, 0.99),
            unit: "ms",
        },
    ]
}

async fn accounts(cli: &Cli, count: usize) -> BenchResult<Vec<Figure>> {
    let (registrations, users) = timed(count, |_| register(cli)).await?;
    let http = reqwest::Client::new();
    let (logins, _) = timed(count, |n| {
        let (http, name) = (http.clone(), users[n].name.clone());
        async move {
            let response = http
                .post(format!("{}/_matrix/client/v3/login", cli.url))
                .json(&json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": name }, "password": PASSWORD }))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            match response.status().is_success() {
                true => Ok(()),
                false => Err(format!("login: {}", response.status())),
            }
        }
    })
    .await?;
    let (creations, rooms) = timed(count, |n| {
        let user = users[n].clone();
        async move { user.create_public_room().await }
    })
    .await?;
    let (joins, _) = timed(count, |n| {
        let (user, room) = (users[(n + 1) % count].clone(), rooms[n].clone());
        async move {
            user.json(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{room}"), json!({}))
                .await
        }
    })
    .await?;
    let mut figures = latency_figures(&format!("register ({count} users)"), &registrations);
    figures.extend(latency_figures("login", &logins));
    figures.extend(latency_figures("createRoom", &creations));
    figures.extend(latency_figures("join", &joins));
    Ok(figures)
}

/// The value at quantile `q` (0..=1) of sorted durations, in milliseconds.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    millis(sorted[index])
}

async fn messages(cli: &Cli, senders: usize, count: usize) -> BenchResult<Vec<Figure>> {
    let mut users = Vec::new();
    for _ in 0..senders.max(1) {
        users.push(register(cli).await?);
    }
    let room = users[0].create_public_room().await?;
    for user in &users[1..] {
        user.json(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{room}"), json!({}))
            .await?;
    }

    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, user) in users.iter().enumerate() {
        let user = user.clone();
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for n in 0..count {
                let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/b{index}-{n}");
                let sent = Instant::now();
                user.json(
                    reqwest::Method::PUT,
                    &path,
                    json!({ "msgtype": "m.text", "body": format!("message {n} from {index}") }),
                )
                .await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let total = latencies.len();
    let mut figures = vec![
        Figure {
            name: format!("send: {senders} senders x {count} messages, throughput"),
            value: total as f64 / elapsed.as_secs_f64(),
            unit: "messages/s",
        },
        Figure {
            name: "send latency p50".into(),
            value: quantile_ms(&latencies, 0.5),
            unit: "ms",
        },
        Figure {
            name: "send latency p99".into(),
            value: quantile_ms(&latencies, 0.99),
            unit: "ms",
        },
    ];

    // The whole history, newest first, 100 events per page, five times over (so the p99 is
    // not just the slowest of a few pages).
    let mut pages = Vec::new();
    for _ in 0..5 {
        let mut from: Option<String> = None;
        loop {
            let query = match &from {
                Some(token) => format!("dir=b&limit=100&from={token}"),
                None => "dir=b&limit=100".to_owned(),
            };
            let path = format!("/_matrix/client/v3/rooms/{room}/messages?{query}");
            let (arrived, page) = users[0].timed_json::<Value>(reqwest::Method::GET, &path, Value::Null).await?;
            pages.push(arrived);
            match page["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => break,
            }
        }
    }
    pages.sort();
    figures.push(Figure {
        name: "/messages, 100 events per page, p50".into(),
        value: quantile_ms(&pages, 0.5),
        unit: "ms",
    });
    figures.push(Figure {
        name: "/messages, 100 events per page, p99".into(),
        value: quantile_ms(&pages, 0.99),
        unit: "ms",
    });
    Ok(figures)
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}
