//! The search workload: a user's rooms filled with messages whose words follow Zipf's law (a
//! few words in most messages, most words rare, as in chat), then `POST /search` timed for
//! one-word and three-word queries, and the index's size read from the server's metrics.

use std::time::Instant;

use rand::Rng;
use rand::distributions::{Distribution, WeightedIndex};
use serde_json::json;

use super::{BenchResult, Cli, Figure, latency_figures, register, timed};

/// Distinct words the messages are written in.
const VOCABULARY: usize = 5_000;
/// Rooms the messages are spread over, and requests in flight while filling them.
const ROOMS: usize = 10;
const IN_FLIGHT: usize = 16;

/// The `rank`-th word of the vocabulary: a made-up but pronounceable one.
fn word(rank: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ren", "to", "sa", "vel", "du", "po", "ri", "nak", "e", "zu", "fa", "gor", "i",
    ];
    let (mut n, mut word) = (rank + 16, String::new());
    while n > 0 {
        word.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    word
}

/// Sends `messages` messages of 5–15 words into rooms of a new user, then times `queries`
/// searches of each kind.
pub async fn search(cli: &Cli, messages: usize, queries: usize, metrics_url: Option<&str>) -> BenchResult<Vec<Figure>> {
    let user = register(cli).await?;
    let mut rooms = Vec::new();
    for _ in 0..ROOMS {
        rooms.push(user.create_public_room().await?);
    }
    let zipf = WeightedIndex::new((1..=VOCABULARY).map(|rank| 1.0 / rank as f64)).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..IN_FLIGHT {
        let (user, rooms, zipf) = (user.clone(), rooms.clone(), zipf.clone());
        tasks.push(tokio::spawn(async move {
            for n in (lane..messages).step_by(IN_FLIGHT) {
                let body: Vec<String> = {
                    let mut rng = rand::thread_rng();
                    let length = rng.gen_range(5..=15);
                    (0..length).map(|_| word(zipf.sample(&mut rng))).collect()
                };
                user.send_text(&rooms[n % ROOMS], &format!("s{n}"), &body.join(" ")).await?;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let filled = started.elapsed();
    let mut figures = vec![Figure {
        name: format!("{messages} messages sent (indexed as they land)"),
        value: messages as f64 / filled.as_secs_f64(),
        unit: "messages/s",
    }];

    // One word among the 100 most common (thousands of hits to rank), and three words among
    // the 20 most common (the rarest one leads, the others are checked per hit).
    let search = |terms: String| {
        let user = user.clone();
        async move {
            let body = json!({ "search_categories": { "room_events": { "search_term": terms, "order_by": "rank" } } });
            let found = user.json(reqwest::Method::POST, "/_matrix/client/v3/search", body).await?;
            Ok::<_, String>(found["search_categories"]["room_events"]["count"].as_u64().unwrap_or(0))
        }
    };
    let pick = |top: usize, count: usize| -> String {
        let mut rng = rand::thread_rng();
        (0..count).map(|_| word(rng.gen_range(0..top))).collect::<Vec<_>>().join(" ")
    };
    for (what, top, words) in [("one-word search", 100, 1), ("three-word search", 20, 3)] {
        let (times, counts) = timed(queries, |_| search(pick(top, words))).await?;
        figures.extend(latency_figures(what, &times));
        figures.push(Figure {
            name: format!("{what}: mean hits"),
            value: counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64,
            unit: "events",
        });
    }
    if let Some(url) = metrics_url {
        figures.extend(index_size(&user.http, url).await?);
    }
    Ok(figures)
}

/// The search index's size (SST files and memtables) and the events table's, from the metrics.
async fn index_size(http: &reqwest::Client, url: &str) -> BenchResult<Vec<Figure>> {
    let text = http
        .get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let bytes = |table: &str| -> f64 {
        ["hearth_rocksdb_sst_files_size_bytes", "hearth_rocksdb_memtable_size_bytes"]
            .iter()
            .filter_map(|metric| {
                let prefix = format!("{metric}{{table=\"{table}\"}} ");
                text.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse::<f64>().ok())
            })
            .sum()
    };
    Ok(["search_postings", "events"]
        .iter()
        .map(|table| Figure {
            name: format!("{table} table on disk and in memtables"),
            value: bytes(table) / 1_048_576.0,
            unit: "MiB",
        })
        .collect())
}
