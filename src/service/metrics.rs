//! Prometheus metrics: what the server counts while it runs (requests, their latency, long
//! polls waiting, events persisted, federation transactions and PDUs) and what it reads at each
//! scrape (RocksDB sizes and compactions, process memory, federation queue depths). Encoded in the Prometheus text format for `/metrics`.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::store::{FamilyStatistics, RocksDbStatistics, Store, StoreStatistics};

/// One kind of request: its method and route (the route's pattern, not the concrete path, so
/// the number of series stays bounded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Endpoint {
    pub method: &'static str,
    pub endpoint: String,
}

/// A request's endpoint and the status it got.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    method: &'static str,
    endpoint: String,
    status: u16,
}

type HistogramFamily = Family<Endpoint, Histogram, fn() -> Histogram>;

/// The server's metrics. One per process, shared by every service that counts something.
pub struct Metrics {
    registry: Registry,
    requests: Family<Outcome, Counter>,
    request_duration: HistogramFamily,
    long_polls: Gauge,
    events_persisted: Counter,
    transactions_sent: Counter,
    transactions_received: Counter,
    pdus_received: Family<PduOutcome, Counter>,
}

/// What became of a PDU another server sent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PduOutcome {
    outcome: &'static str,
}

/// Keeps the long-poll gauge raised while a sync waits; lowered when dropped.
pub struct LongPoll<'a>(&'a Gauge);

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// The metrics of a server on `store`.
    pub fn new(store: Store) -> Metrics {
        let mut registry = Registry::with_prefix("hearth");
        let requests = Family::<Outcome, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by endpoint and status", requests.clone());
        let request_duration: HistogramFamily = Family::new_with_constructor(|| {
            // 0.25 ms to about 8 s: a cached read to a long poll that ran to its end.
            Histogram::new(exponential_buckets(0.00025, 2.0, 16))
        });
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response, by endpoint",
            Unit::Seconds,
            request_duration.clone(),
        );
        let long_polls = Gauge::default();
        registry.register("sync_long_polls", "Syncs waiting for something to happen", long_polls.clone());
        let events_persisted = Counter::default();
        registry.register(
            "events_persisted",
            "Room events written to the store since start",
            events_persisted.clone(),
        );
        let transactions_sent = Counter::default();
        registry.register(
            "federation_transactions_sent",
            "Transactions other servers took since start",
            transactions_sent.clone(),
        );
        let transactions_received = Counter::default();
        registry.register(
            "federation_transactions_received",
            "Transactions taken from other servers since start",
            transactions_received.clone(),
        );
        let pdus_received = Family::<PduOutcome, Counter>::default();
        registry.register(
            "federation_pdus_received",
            "PDUs from other servers by outcome (accepted, rejected, soft_failed) since start",
            pdus_received.clone(),
        );
        registry.register_collector(Box::new(ScrapeTime { store }));
        Metrics {
            registry,
            requests,
            request_duration,
            long_polls,
            events_persisted,
            transactions_sent,
            transactions_received,
            pdus_received,
        }
    }

    /// Counts a transaction another server took.
    pub fn transaction_sent(&self) {
        self.transactions_sent.inc();
    }

    /// Counts a transaction taken from another server.
    pub fn transaction_received(&self) {
        self.transactions_received.inc();
    }

    /// Counts a PDU from another server: `accepted`, `rejected` or `soft_failed`.
    pub fn pdu_received(&self, outcome: &'static str) {
        self.pdus_received.get_or_create(&PduOutcome { outcome }).inc();
    }

    /// Counts an answered request.
    pub fn record_request(&self, endpoint: Endpoint, status: u16, elapsed: Duration) {
        self.request_duration.get_or_create(&endpoint).observe(elapsed.as_secs_f64());
        let outcome = Outcome {
            method: endpoint.method,
            endpoint: endpoint.endpoint,
            status,
        };
        self.requests.get_or_create(&outcome).inc();
    }

    /// Marks a sync as waiting until the returned guard is dropped.
    pub fn long_poll(&self) -> LongPoll<'_> {
        self.long_polls.inc();
        LongPoll(&self.long_polls)
    }

    /// Counts one persisted room event.
    pub fn event_persisted(&self) {
        self.events_persisted.inc();
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail, and every metric here encodes.
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).expect("metrics encode into a String");
        text
    }
}

/// Reads one figure of a column family's statistics.
type FamilyFigure = fn(&FamilyStatistics) -> u64;

/// The figures read at each scrape rather than counted: the store's and the process's.
struct ScrapeTime {
    store: Store,
}

impl std::fmt::Debug for ScrapeTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeTime").finish_non_exhaustive()
    }
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        match self.store.statistics() {
            StoreStatistics::RocksDb(statistics) => encode_rocksdb(&statistics, &mut encoder)?,
            StoreStatistics::Postgres(sizes) => {
                let mut metric = encoder.encode_descriptor(
                    "postgres_table_size_bytes",
                    "Size of the table on disk in PostgreSQL, indexes included.",
                    None,
                    ConstGauge::new(0i64).metric_type(),
                )?;
                for (table, bytes) in sizes {
                    ConstGauge::new(bytes as i64).encode(metric.encode_family(&[("table", table)])?)?;
                }
            }
        }
        let memory = process_memory();
        let process = [
            ("process_resident_memory_bytes", "Resident memory of the process.", memory.resident),
            (
                "process_resident_memory_peak_bytes",
                "Peak resident memory of the process since start.",
                memory.peak,
            ),
        ];
        for (name, help, value) in process {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let queued = crate::service::federation::sender::queue_depths(&self.store).unwrap_or_default();
        let mut metric = encoder.encode_descriptor(
            "federation_queue_depth",
            "Events waiting to be sent, by destination server.",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (destination, depth) in &queued {
            let labels = [("destination", destination.as_str())];
            ConstGauge::new(*depth as i64).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// RocksDB's figures: per column family (a busy table's, or the rarely written tables'), and
/// for the whole database.
fn encode_rocksdb(statistics: &RocksDbStatistics, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let per_family: [(&str, &str, FamilyFigure); 4] = [
        (
            "rocksdb_sst_files_size_bytes",
            "Size of the column family's SST files on disk.",
            |f| f.sst_files_bytes,
        ),
        (
            "rocksdb_live_data_size_bytes",
            "Estimated size of the column family's live data.",
            |f| f.live_data_bytes,
        ),
        ("rocksdb_memtable_size_bytes", "Size of the column family's memtables.", |f| {
            f.memtable_bytes
        }),
        (
            "rocksdb_pending_compaction_bytes",
            "Estimated bytes compaction still has to rewrite in the column family.",
            |f| f.pending_compaction_bytes,
        ),
    ];
    for (name, help, figure) in per_family {
        let mut metric = encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
        for family in &statistics.families {
            let labels = [("column_family", family.name)];
            ConstGauge::new(figure(family) as i64).encode(metric.encode_family(&labels)?)?;
        }
    }
    let whole_store = [
        (
            "rocksdb_running_compactions",
            "Compactions running now.",
            statistics.running_compactions,
        ),
        (
            "rocksdb_running_flushes",
            "Memtable flushes running now.",
            statistics.running_flushes,
        ),
        (
            "rocksdb_compaction_pending",
            "1 when at least one column family waits for a compaction.",
            statistics.compaction_pending,
        ),
    ];
    for (name, help, value) in whole_store {
        let gauge = ConstGauge::new(value as i64);
        gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
    }
    Ok(())
}

/// Resident and peak resident memory, in bytes.
struct ProcessMemory {
    resident: u64,
    peak: u64,
}

/// Reads the process's memory from `/proc/self/status` (zeros where there is no procfs).
fn process_memory() -> ProcessMemory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kilobytes = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    ProcessMemory {
        resident: kilobytes("VmRSS:"),
        peak: kilobytes("VmHWM:"),
    }
}
