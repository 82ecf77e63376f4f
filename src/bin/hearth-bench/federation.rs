//! The federation workload: two servers, a sender on the first and a receiver on the peer who
//! joined over federation; delivery through the receiver's long poll, a burst's throughput, the
//! time to join a big room of the first server, encryption keys of the peer's users queried and
//! claimed from the first, and media of the first downloaded on the peer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use rand::RngCore;

use super::media::mib_per_second;
use super::sync::{SYNC_V3, delivery_figures, next_batch, ping_deliveries};
use super::{BenchResult, Cli, Figure, Session, latency_figures, millis, register, register_at};

/// Federation: a sender on the first server, a receiver on the peer who joined the sender's
/// room over federation; pings through the receiver's long poll, then a burst of messages
/// timed until the last one reaches the peer.
pub async fn delivery(cli: &Cli, peer: &str, pings: usize, burst: usize) -> BenchResult<Vec<Figure>> {
    let sender = register(cli).await?;
    let receiver = register_at(cli, peer).await?;
    let room = sender.create_public_room().await?;
    let origin = cli.url.split("://").nth(1).unwrap_or(&cli.url).trim_end_matches('/');
    let started = Instant::now();
    receiver
        .json(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{room}?via={origin}"),
            json!({}),
        )
        .await?;
    let mut figures = vec![Figure {
        name: "join over federation (new room)".into(),
        value: millis(started.elapsed()),
        unit: "ms",
    }];
    let since = next_batch(
        &receiver
            .json(reqwest::Method::GET, "/_matrix/client/v3/sync?timeout=0", Value::Null)
            .await?,
    )?;
    let (latencies, missed) = ping_deliveries(&sender, &receiver, &room, pings, since, SYNC_V3).await?;
    figures.extend(delivery_figures("peer's long-poll sync over federation", latencies, missed));

    // A burst: every message sent as fast as the first server takes them, timed until the
    // last one is in the peer's copy of the room.
    let started = Instant::now();
    for n in 0..burst {
        sender.send_text(&room, &format!("burst{n}"), &format!("burst {n}")).await?;
    }
    let sent = started.elapsed();
    let last = format!("burst {}", burst.saturating_sub(1));
    loop {
        let page = receiver
            .json(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"),
                Value::Null,
            )
            .await?;
        if page["chunk"][0]["content"]["body"] == last.as_str() {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the burst did not arrive within 5 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let arrived = started.elapsed();
    figures.push(Figure {
        name: format!("burst of {burst}: sent on the first server"),
        value: burst as f64 / sent.as_secs_f64(),
        unit: "messages/s",
    });
    figures.push(Figure {
        name: format!("burst of {burst}: accepted by the peer (transactions of up to 50)"),
        value: burst as f64 / arrived.as_secs_f64(),
        unit: "PDUs/s",
    });
    Ok(figures)
}

/// A room on the first server with `members` joined users and `history` events, then the time
/// a peer's user takes to join it over federation (state and auth chain included).
pub async fn big_room_join(cli: &Cli, peer: &str, members: usize, history: usize) -> BenchResult<Vec<Figure>> {
    let owner = register(cli).await?;
    let room = owner.create_public_room().await?;
    let join_path = format!("/_matrix/client/v3/join/{room}");
    // Members register and join four at a time (registration hashes a password each).
    let mut joined = Vec::new();
    for chunk in (0..members.saturating_sub(1)).collect::<Vec<_>>().chunks(4) {
        let batch = chunk.iter().map(|_| async {
            let member = register(cli).await?;
            member.json(reqwest::Method::POST, &join_path, json!({})).await?;
            Ok::<_, String>(member)
        });
        for member in futures_util::future::join_all(batch).await {
            joined.push(member?);
        }
    }
    let senders: Vec<&Session> = std::iter::once(&owner).chain(joined.iter()).collect();
    for n in 0..history.saturating_sub(members) {
        senders[n % senders.len()]
            .send_text(&room, &format!("h{n}"), &format!("history {n}"))
            .await?;
    }
    let guest = register_at(cli, peer).await?;
    let origin = cli.url.split("://").nth(1).unwrap_or(&cli.url).trim_end_matches('/');
    let started = Instant::now();
    guest
        .json(reqwest::Method::POST, &format!("{join_path}?via={origin}"), json!({}))
        .await?;
    Ok(vec![Figure {
        name: format!("join over federation, room of {members} members and {history} events"),
        value: millis(started.elapsed()),
        unit: "ms",
    }])
}

/// Encryption keys across servers: `users` users of the peer, each with a device that uploaded
/// identity keys and one-time keys; a user of the first server queries all their keys and
/// claims a one-time key of each device (both answered by the peer over federation), `rounds`
/// times.
pub async fn remote_keys(cli: &Cli, peer: &str, users: usize, rounds: usize) -> BenchResult<Vec<Figure>> {
    let querier = register(cli).await?;
    let mut devices = serde_json::Map::new();
    for _ in 0..users {
        let user = register_at(cli, peer).await?;
        let whoami = user
            .json(reqwest::Method::GET, "/_matrix/client/v3/account/whoami", Value::Null)
            .await?;
        let (user_id, device) = (
            whoami["user_id"].clone(),
            whoami["device_id"].as_str().unwrap_or_default().to_owned(),
        );
        let one_time_keys: serde_json::Map<String, Value> = (0..rounds)
            .map(|n| {
                (
                    format!("signed_curve25519:AAAA{n}"),
                    json!({ "key": format!("otk{n}"), "signatures": {} }),
                )
            })
            .collect();
        let upload = json!({
            "device_keys": {
                "user_id": user_id, "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": { format!("curve25519:{device}"): "curve", format!("ed25519:{device}"): "ed" },
                "signatures": {},
            },
            "one_time_keys": one_time_keys,
        });
        user.json(reqwest::Method::POST, "/_matrix/client/v3/keys/upload", upload).await?;
        devices.insert(
            user_id.as_str().unwrap_or_default().to_owned(),
            json!({ device: "signed_curve25519" }),
        );
    }
    let query = json!({ "device_keys": devices.keys().map(|user| (user.clone(), json!([]))).collect::<serde_json::Map<_, _>>() });
    let claim = json!({ "one_time_keys": devices });
    let (mut queries, mut claims) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let answer = querier
            .json(reqwest::Method::POST, "/_matrix/client/v3/keys/query", query.clone())
            .await?;
        queries.push(started.elapsed());
        if answer["device_keys"].as_object().map_or(0, serde_json::Map::len) != users {
            return Err(format!("keys/query did not answer for every remote user: {answer}"));
        }
        let started = Instant::now();
        let answer = querier
            .json(reqwest::Method::POST, "/_matrix/client/v3/keys/claim", claim.clone())
            .await?;
        claims.push(started.elapsed());
        if answer["one_time_keys"].as_object().map_or(0, serde_json::Map::len) != users {
            return Err(format!("keys/claim did not answer for every remote user: {answer}"));
        }
    }
    queries.sort();
    claims.sort();
    let mut figures = latency_figures(&format!("keys/query of {users} remote users ({rounds} rounds)"), &queries);
    figures.extend(latency_figures(
        &format!("keys/claim of {users} remote devices ({rounds} rounds)"),
        &claims,
    ));
    Ok(figures)
}

/// Media across servers: a file of `size_mib` MiB uploaded on the first server, downloaded by a
/// user of the peer: the first download (fetched over federation and stored) and the next
/// (served from the peer's copy).
pub async fn remote_media(cli: &Cli, peer: &str, size_mib: usize) -> BenchResult<Vec<Figure>> {
    let uploader = register(cli).await?;
    let reader = register_at(cli, peer).await?;
    let mut file = vec![0u8; size_mib * 1024 * 1024];
    rand::thread_rng().fill_bytes(&mut file);
    let media = uploader.upload("application/octet-stream", file).await?;
    let path = format!("/_matrix/client/v1/media/download/{media}");
    let mut figures = Vec::new();
    for what in ["first fetch over federation", "cached"] {
        let started = Instant::now();
        let bytes = reader.get_bytes(&path).await?;
        figures.push(Figure {
            name: format!("remote media {size_mib} MiB: {what}"),
            value: mib_per_second(bytes, started.elapsed()),
            unit: "MiB/s",
        });
    }
    Ok(figures)
}
