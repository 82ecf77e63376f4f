//! Observability: Prometheus metrics on their own listener (requests by endpoint and status
//! with latency histograms, syncs waiting, events persisted, RocksDB and memory figures), JSON
//! logs, and a shutdown that ends waiting syncs instead of sitting out their timeouts.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{TestServer, free_port, postgres_cluster};

/// The value of the sample `series` (name and labels exactly as exposed), if exposed.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

async fn scrape(address: &str) -> String {
    let response = reqwest::get(format!("http://{address}/metrics")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    response.text().await.unwrap()
}

/// Scrapes until `series` has `value` (the server counts a request once its response is out).
async fn scrape_until(address: &str, series: &str, value: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = scrape(address).await;
        if sample(&metrics, series) == Some(value) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "{series} never reached {value}:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_count_requests_long_polls_events_and_read_the_store_and_memory() {
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let server = TestServer::start(&[("HEARTH_METRICS__LISTEN", &metrics_address)]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (_, created) = server.post("/_matrix/client/v3/createRoom", Some(&alice), json!({})).await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    for i in 0..3 {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t{i}");
        let body = json!({ "msgtype": "m.text", "body": format!("hello {i}") });
        assert_eq!(server.put(&path, Some(&alice), body).await.0.as_u16(), 200);
    }
    assert_eq!(server.get("/_matrix/client/v3/no/such/endpoint", None).await.0.as_u16(), 404);

    let send = r#"method="PUT",endpoint="/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}""#;
    let metrics = scrape_until(
        &metrics_address,
        &format!("hearth_http_requests_total{{{send},status=\"200\"}}"),
        3.0,
    )
    .await;
    assert_eq!(
        sample(&metrics, &format!("hearth_http_request_duration_seconds_count{{{send}}}")),
        Some(3.0)
    );
    assert!(sample(&metrics, &format!("hearth_http_request_duration_seconds_sum{{{send}}}")).unwrap() > 0.0);
    assert!(
        metrics.contains(&format!("hearth_http_request_duration_seconds_bucket{{{send},le=\"+Inf\"}} 3")),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"hearth_http_requests_total{method="GET",endpoint="unmatched",status="404"}"#
        ),
        Some(1.0)
    );
    // createRoom's events (create, join, power levels, join rules, history visibility, …) and
    // the three messages.
    let events = sample(&metrics, "hearth_events_persisted_total").unwrap();
    assert!(events >= 8.0, "{events} events persisted");
    if postgres_cluster().is_some() {
        // PostgreSQL's tables, indexes included, as it reports them.
        assert!(sample(&metrics, r#"hearth_postgres_table_size_bytes{table="events"}"#).unwrap() > 0.0);
        assert!(sample(&metrics, r#"hearth_postgres_table_size_bytes{table="timeline"}"#).is_some());
    } else {
        // A busy table's column family, and the one the rarely written tables share.
        assert!(sample(&metrics, r#"hearth_rocksdb_memtable_size_bytes{column_family="events"}"#).unwrap() > 0.0);
        assert!(sample(&metrics, r#"hearth_rocksdb_memtable_size_bytes{column_family="rarely_written"}"#).unwrap() > 0.0);
        for series in [
            r#"hearth_rocksdb_sst_files_size_bytes{column_family="timeline"}"#,
            r#"hearth_rocksdb_live_data_size_bytes{column_family="events"}"#,
            r#"hearth_rocksdb_pending_compaction_bytes{column_family="events"}"#,
            "hearth_rocksdb_running_compactions",
            "hearth_rocksdb_running_flushes",
            "hearth_rocksdb_compaction_pending",
        ] {
            assert!(sample(&metrics, series).is_some(), "{series} missing:\n{metrics}");
        }
    }
    let resident = sample(&metrics, "hearth_process_resident_memory_bytes").unwrap();
    assert!(resident > 1_000_000.0, "resident memory {resident}");
    assert!(sample(&metrics, "hearth_process_resident_memory_peak_bytes").unwrap() >= resident);
    assert_eq!(sample(&metrics, "hearth_sync_long_polls"), Some(0.0));

    // A long poll raises the gauge while it waits and lowers it when a message ends it.
    let (_, first) = server.get("/_matrix/client/v3/sync", Some(&alice)).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let poll = {
        let url = format!("{}/_matrix/client/v3/sync?since={since}&timeout=30000", server.base_url);
        let alice = alice.clone();
        tokio::spawn(async move { reqwest::Client::new().get(url).bearer_auth(alice).send().await.unwrap().status() })
    };
    scrape_until(&metrics_address, "hearth_sync_long_polls", 1.0).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/wake");
    server
        .put(&path, Some(&alice), json!({ "msgtype": "m.text", "body": "wake up" }))
        .await;
    assert_eq!(poll.await.unwrap().as_u16(), 200);
    let metrics = scrape_until(&metrics_address, "hearth_sync_long_polls", 0.0).await;
    assert!(sample(&metrics, "hearth_events_persisted_total").unwrap() > events);

    // The two listeners serve what is theirs only.
    assert_eq!(server.get("/metrics", None).await.0.as_u16(), 404);
    let client_api_on_metrics = reqwest::get(format!("http://{metrics_address}/_matrix/client/versions"))
        .await
        .unwrap();
    assert_eq!(client_api_on_metrics.status().as_u16(), 404);
}

#[tokio::test]
async fn no_metrics_listener_unless_configured() {
    let server = TestServer::start(&[]).await;
    assert!(!server.log().contains("serving metrics"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_waiting_long_polls_at_once() {
    let mut server = TestServer::start(&[]).await;
    let (alice, _) = server.register("alice", "alicepass").await;
    let (_, first) = server.get("/_matrix/client/v3/sync", Some(&alice)).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let url = format!("{}/_matrix/client/v3/sync?since={since}&timeout=60000", server.base_url);
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let response = reqwest::Client::new().get(url).bearer_auth(alice).send().await.unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
    });
    // Give the poll time to start waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.stop(), Some(0), "{}", server.log());
    let (status, body) = poll.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["next_batch"].is_string(), "{body}");
    // Well before the poll's 60 s timeout: shutting down did not wait it out.
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(server.log().contains("stopped cleanly"), "{}", server.log());
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let server = TestServer::start(&[("HEARTH_LOG__FORMAT", "json"), ("HEARTH_LOG__LEVEL", "info")]).await;
    server.register("alice", "alicepass").await;
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let serving = lines
        .iter()
        .find(|line| line["fields"]["message"] == "Hearth is serving")
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["fields"]["server_name"], "localhost");
    assert!(serving["fields"]["listen"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(serving["timestamp"].is_string(), "{serving}");
}
