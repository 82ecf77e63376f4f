//! The sender: drains the outbox (`federation_outbox`, a row per destination and stream
//! position, written in the same batch as the event, and `federation_edus`, a row per
//! destination and EDU) into transactions. One transaction in flight per destination, at most
//! 50 PDUs and 100 EDUs each, in order; rows are deleted only after
//! the destination answered 200, so a crash or an unreachable server loses nothing. A failed
//! destination is retried with exponential backoff (capped at an hour), and the first wake-up
//! after a restart resumes every destination that still has rows.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ruma::api::federation::transactions::send_transaction_message;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName};
use serde::Serialize;

use crate::error::Result;
use crate::service::rooms::outbox::QueuedEdu;
use crate::service::{Services, now_ms};
use crate::store::{SEP, Store, Table, prefix};

/// The most PDUs and EDUs in one transaction.
const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;
/// The first retry delay after a failure; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How soon a destination another process is sending to is looked at again.
const OTHER_DRAINER_RETRY: Duration = Duration::from_secs(1);
/// How often the sender looks at the outbox without being woken (backoffs ending).
const IDLE_WAKE: Duration = Duration::from_secs(5);

/// How sending to one destination goes, for `hearth admin federation status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DestinationStatus {
    pub last_success_ts: Option<u64>,
    pub last_failure_ts: Option<u64>,
    pub last_failure: Option<String>,
    pub failures_in_a_row: u32,
    #[serde(skip)]
    pub retry_at: Option<Instant>,
}

/// The sender's state: destinations being sent to and how each went.
#[derive(Default)]
pub struct Sender {
    in_flight: Mutex<HashSet<OwnedServerName>>,
    statuses: Mutex<BTreeMap<OwnedServerName, DestinationStatus>>,
}

impl Sender {
    /// Every destination's status.
    pub fn statuses(&self) -> BTreeMap<OwnedServerName, DestinationStatus> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lets a destination in backoff be tried at once.
    pub fn retry_now(&self, destination: &ServerName) {
        if let Some(status) = self.statuses.lock().unwrap_or_else(|e| e.into_inner()).get_mut(destination) {
            status.retry_at = None;
        }
    }

    fn may_send(&self, destination: &ServerName) -> bool {
        let statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        let ready = statuses
            .get(destination)
            .and_then(|status| status.retry_at)
            .is_none_or(|at| at <= Instant::now());
        ready
            && self
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(destination.to_owned())
    }

    /// Ends a send that did not start (another process sends to the destination).
    fn release(&self, destination: &ServerName) {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(destination);
    }

    fn record(&self, destination: &ServerName, outcome: Result<()>) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        let status = statuses.entry(destination.to_owned()).or_default();
        match outcome {
            Ok(()) => {
                status.last_success_ts = Some(now_ms());
                status.failures_in_a_row = 0;
                status.retry_at = None;
            }
            Err(error) => {
                status.last_failure_ts = Some(now_ms());
                status.last_failure = Some(error.to_string());
                status.failures_in_a_row = status.failures_in_a_row.saturating_add(1);
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1u32 << status.failures_in_a_row.min(16).saturating_sub(1))
                    .min(MAX_BACKOFF);
                status.retry_at = Some(Instant::now() + backoff);
                tracing::info!(%destination, %error, ?backoff, "sending to a server failed");
            }
        }
        drop(statuses);
        self.release(destination);
    }
}

/// The destinations with rows in the outbox, and how many rows (PDUs and EDUs) each has.
pub fn queue_depths(store: &Store) -> Result<BTreeMap<OwnedServerName, usize>> {
    let mut depths = BTreeMap::new();
    let pdus = store.scan_keys(Table::FederationOutbox, &[])?;
    let edus = store.scan_keys(Table::FederationEdus, &[])?;
    for key in pdus.into_iter().chain(edus) {
        let Some(end) = key.iter().position(|byte| *byte == SEP) else {
            continue;
        };
        if let Ok(name) = ServerName::parse(String::from_utf8_lossy(&key[..end]).as_ref()) {
            *depths.entry(name).or_insert(0) += 1;
        }
    }
    Ok(depths)
}

/// Runs the sender until the server shuts down: at start every destination with rows in the
/// outbox, then those events are queued for (and failed ones, once their backoff is over).
pub async fn run(services: Arc<Services>) {
    let outbox = services.rooms.outbox();
    match queue_depths(&services.store) {
        Ok(depths) => depths
            .into_keys()
            .for_each(|destination| services.rooms.requeue_outbox(destination)),
        Err(error) => tracing::error!(%error, "reading the federation outbox"),
    }
    let mut pending: BTreeSet<OwnedServerName> = BTreeSet::new();
    loop {
        let woken = outbox.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        pending.extend(services.rooms.take_outbox_destinations());
        // A destination in flight or backing off stays pending until it may be sent to.
        pending.retain(|destination| {
            let ready = services.federation.sender.may_send(destination);
            if ready {
                tokio::spawn(deliver(services.clone(), destination.clone()));
            }
            !ready
        });
        if services.rooms.stream().is_shutting_down() {
            return;
        }
        let _ = tokio::time::timeout(IDLE_WAKE, woken).await;
    }
}

/// Sends a destination everything queued for it, a transaction at a time, until it is empty or
/// a transaction fails.
async fn deliver(services: Arc<Services>, destination: OwnedServerName) {
    // One process at a time per destination when processes share the database; the one
    // sending also sends what the others queued.
    let drainer = match services.store.try_lock(&[b"federation_outbox:", destination.as_bytes()].concat()) {
        Ok(Some(drainer)) => drainer,
        Ok(None) => {
            services.federation.sender.release(&destination);
            tokio::time::sleep(OTHER_DRAINER_RETRY).await;
            services.rooms.requeue_outbox(destination);
            return;
        }
        Err(error) => {
            services.federation.sender.release(&destination);
            tracing::error!(%error, "cannot take a destination's sending lock");
            return;
        }
    };
    let outcome = deliver_all(&services, &destination).await;
    drop(drainer);
    let failed = outcome.is_err();
    services.federation.sender.record(&destination, outcome);
    if failed {
        // Its rows stay; it is tried again once its backoff is over.
        services.rooms.requeue_outbox(destination);
    } else {
        // Rows queued while this ran are looked at again.
        services.rooms.outbox().notify_one();
    }
}

async fn deliver_all(services: &Services, destination: &ServerName) -> Result<()> {
    let destination_prefix = prefix(&[destination.as_bytes()]);
    loop {
        let rows = services
            .store
            .range(Table::FederationOutbox, &destination_prefix, &destination_prefix, true, MAX_PDUS)?;
        let edu_rows = services
            .store
            .range(Table::FederationEdus, &destination_prefix, &destination_prefix, true, MAX_EDUS)?;
        if rows.is_empty() && edu_rows.is_empty() {
            return Ok(());
        }
        let mut pdus = Vec::new();
        for (_, event_id) in &rows {
            let Ok(event_id) = ruma::EventId::parse(String::from_utf8_lossy(event_id).as_ref()) else {
                continue;
            };
            if let Some(stored) = services.rooms.stored_event(&event_id)? {
                pdus.push(stored.pdu.to_raw()?);
            }
        }
        let edus = edu_rows
            .iter()
            .filter_map(|(_, row)| serde_json::from_slice::<QueuedEdu>(row).ok())
            .filter(|queued| !queued.is_stale())
            .filter_map(|queued| serde_json::value::to_raw_value(&queued.edu).ok().map(Raw::from_json))
            .collect();
        // Named after the first and last rows: a retry after a failure sends the same ID.
        let ends = |rows: &[(Vec<u8>, Vec<u8>)]| rows.first().map(|first| (stream_of(&first.0), stream_of(&rows[rows.len() - 1].0)));
        let (pdu_first, pdu_last) = ends(&rows).unwrap_or_default();
        let (edu_first, edu_last) = ends(&edu_rows).unwrap_or_default();
        let transaction_id = format!("{pdu_first}-{pdu_last}.{edu_first}-{edu_last}");
        let mut request = send_transaction_message::v1::Request::new(
            transaction_id.into(),
            services.config.server_name.clone(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.pdus = pdus;
        request.edus = edus;
        let answer = services.federation.send(destination, request).await?;
        services.metrics.transaction_sent();
        for (event_id, result) in answer.pdus {
            if let Err(error) = result {
                tracing::info!(%destination, %event_id, %error, "a server refused an event");
            }
        }
        let mut batch = services.store.batch();
        for (key, _) in &rows {
            batch.delete(Table::FederationOutbox, key);
        }
        for (key, _) in &edu_rows {
            batch.delete(Table::FederationEdus, key);
        }
        batch.commit()?;
    }
}

/// The stream position at the end of an outbox key.
fn stream_of(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|start| key[start..].try_into().ok())
        .map_or(0, u64::from_be_bytes)
}
