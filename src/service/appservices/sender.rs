//! Delivery of the appservice outboxes: one task per appservice with a `url` sends its rows in
//! order, up to 100 in a transaction (`PUT /_matrix/app/v1/transactions/{txnId}`), and deletes
//! them once the appservice answered 200. A failure is retried with the same rows under the
//! same transaction ID (so an appservice that did process it skips it), after a backoff that
//! doubles from 1 s to 5 min and ends early when the appservice makes a request of its own
//! (it is back). Rows outlive a restart of either side.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ruma::api::appservice::event::push_events;
use ruma::serde::Raw;

use super::{Appservice, Queued};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::store::{Row, Table, prefix};

/// The most rows one transaction carries.
const MAX_ROWS: usize = 100;
/// The first wait after a failed attempt, doubled after each further one...
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// ... up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Runs a sender per registered appservice until aborted, following registrations.
pub async fn run(services: Arc<Services>) {
    let mut tasks: HashMap<String, (Arc<Appservice>, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let list = services.appservices.list();
        tasks.retain(|_, (appservice, task)| {
            let registered = list.iter().any(|current| Arc::ptr_eq(current, appservice));
            if !registered {
                task.abort();
            }
            registered
        });
        for appservice in list.iter().filter(|appservice| appservice.registration.url.is_some()) {
            if !tasks.contains_key(appservice.id()) {
                let task = tokio::spawn(deliver(services.clone(), appservice.clone()));
                tasks.insert(appservice.id().to_owned(), (appservice.clone(), task));
            }
        }
        services.appservices.changed.notified().await;
    }
}

/// Sends one appservice's outbox, for ever.
async fn deliver(services: Arc<Services>, appservice: Arc<Appservice>) {
    let lock_name = [b"appservice_outbox:", appservice.id().as_bytes()].concat();
    loop {
        // One process at a time when processes share the database; it sends what all queued.
        let woken = appservice.wake.notified();
        let drainer = match services.store.try_lock(&lock_name) {
            Ok(Some(drainer)) => drainer,
            Ok(None) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(error) => {
                tracing::error!(appservice = appservice.id(), %error, "cannot take an appservice outbox's lock");
                tokio::time::sleep(FIRST_BACKOFF).await;
                continue;
            }
        };
        match next_transaction(&services, &appservice) {
            Ok(Some(transaction)) => send_until_taken(&services, &appservice, &transaction).await,
            Ok(None) => {
                drop(drainer);
                woken.await;
            }
            Err(error) => {
                tracing::error!(appservice = appservice.id(), %error, "reading an appservice's outbox failed");
                tokio::time::sleep(FIRST_BACKOFF).await;
            }
        }
    }
}

/// Sends `transaction` until the appservice takes it, backing off between attempts.
async fn send_until_taken(services: &Services, appservice: &Appservice, transaction: &Pending) {
    let mut backoff = FIRST_BACKOFF;
    while let Err(error) = send(services, appservice, transaction).await {
        tracing::warn!(appservice = appservice.id(), %error, retry_in = ?backoff, "a transaction to an appservice failed");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = appservice.alive.notified() => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A transaction being sent: its ID and the rows it carries.
struct Pending {
    txn_id: String,
    rows: Vec<Row>,
}

/// The next rows of the outbox, if any. The transaction ID names the first and last row, so a
/// retry after a restart that finds the same rows has the same ID.
fn next_transaction(services: &Services, appservice: &Appservice) -> Result<Option<Pending>> {
    let outbox = prefix(&[appservice.id().as_bytes()]);
    let rows = services.store.range(Table::AppserviceOutbox, &outbox, &outbox, true, MAX_ROWS)?;
    let number = |row: Option<&Row>| row.and_then(|(key, _)| Some(u64::from_be_bytes(key.get(outbox.len()..)?.try_into().ok()?)));
    let (Some(first), Some(last)) = (number(rows.first()), number(rows.last())) else {
        return Ok(None);
    };
    Ok(Some(Pending {
        txn_id: format!("{first}-{last}"),
        rows,
    }))
}

fn raw<T>(value: &impl serde::Serialize) -> Result<Raw<T>> {
    Ok(Raw::from_json(serde_json::value::to_raw_value(value)?))
}

/// Sends a transaction and, once the appservice took it, deletes its rows.
async fn send(services: &Services, appservice: &Appservice, transaction: &Pending) -> Result<()> {
    let mut request = push_events::v1::Request::new(transaction.txn_id.as_str().into(), Vec::new());
    for (_, value) in &transaction.rows {
        match serde_json::from_slice::<Queued>(value)? {
            Queued::Event(event_id) => {
                // An event purged since is skipped.
                if let Some(stored) = services.rooms.stored_event(&event_id)? {
                    request.events.push(raw(&services.rooms.client_event(&event_id, &stored, None)?)?);
                }
            }
            Queued::Ephemeral(event) => request.ephemeral.push(raw(&event)?),
            Queued::ToDevice(message) => request.to_device.push(raw(&message)?),
            Queued::DeviceListChanged(user) => {
                request.device_lists.left.retain(|left| *left != user);
                if !request.device_lists.changed.contains(&user) {
                    request.device_lists.changed.push(user);
                }
            }
            Queued::DeviceListLeft(user) => {
                request.device_lists.changed.retain(|changed| *changed != user);
                if !request.device_lists.left.contains(&user) {
                    request.device_lists.left.push(user);
                }
            }
            Queued::KeyCounts(user, device) => {
                let counts = services.keys.one_time_key_counts(&user, &device)?;
                let fallback = services.keys.unused_fallback_key_types(&user, &device)?;
                request
                    .device_one_time_keys_count
                    .entry(user.clone())
                    .or_default()
                    .insert(device.clone(), counts);
                request
                    .device_unused_fallback_key_types
                    .entry(user)
                    .or_default()
                    .insert(device, fallback);
            }
        }
    }
    services
        .appservices
        .call(appservice, request)
        .await
        .map_err(|error| Error::bad_gateway(error.to_string()))?;
    let mut batch = services.store.batch();
    for (key, _) in &transaction.rows {
        batch.delete(Table::AppserviceOutbox, key);
    }
    batch.commit()?;
    Ok(())
}
