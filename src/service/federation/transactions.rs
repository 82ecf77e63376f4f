//! Transactions from other servers (`PUT /send/{txnId}`): each PDU through the checks of
//! [`super::pdu`] and the room's intake; `prev_events` this server lacks are fetched with
//! `get_missing_events` (bounded) and taken in first. A transaction is processed once per
//! origin and ID: a retry gets the stored answer.

use std::collections::BTreeMap;

use ruma::api::federation::event::get_missing_events;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::{OwnedEventId, RoomId, ServerName};
use serde_json::value::RawValue as RawJsonValue;

use super::Federation;
use crate::error::{Error, Result};
use crate::service::rooms::Rooms;
use crate::service::rooms::remote::Intake;
use crate::store::{Table, key};

/// The most PDUs and EDUs one transaction may carry.
const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;
/// The most missing events asked for to fill one gap.
const MAX_MISSING_EVENTS: u32 = 20;

/// Per-PDU results of a transaction.
pub type TransactionResults = BTreeMap<OwnedEventId, Result<(), String>>;

/// What a transaction did: its per-PDU results, and the events that are new here (for the
/// notifications they make).
pub struct Received {
    pub results: TransactionResults,
    pub accepted: Vec<OwnedEventId>,
}

impl Federation {
    /// Takes in a transaction's PDUs (EDUs are not handled yet and are ignored).
    pub async fn receive_transaction(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        transaction_id: &str,
        pdus: &[Box<RawJsonValue>],
        edu_count: usize,
    ) -> Result<Received> {
        if pdus.len() > MAX_PDUS || edu_count > MAX_EDUS {
            return Err(Error::bad_json(format!(
                "A transaction carries at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
            )));
        }
        let transaction_key = key(&[origin.as_bytes(), transaction_id.as_bytes()]);
        if let Some(results) = self
            .store
            .get_json::<TransactionResults>(Table::FederationTransactions, &transaction_key)?
        {
            return Ok(Received {
                results,
                accepted: Vec::new(),
            });
        }
        self.metrics.transaction_received();
        let mut results = TransactionResults::new();
        let mut accepted = Vec::new();
        for pdu in pdus {
            let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(pdu.get()) else {
                continue;
            };
            match self.receive_pdu(rooms, origin, object).await {
                Ok((event_id, outcome, new)) => {
                    if new {
                        accepted.push(event_id.clone());
                    }
                    results.insert(event_id, outcome);
                }
                Err(error) => tracing::info!(%origin, %error, "a PDU from another server was dropped"),
            }
        }
        let mut batch = self.store.batch();
        batch.put_json(Table::FederationTransactions, &transaction_key, &results);
        batch.commit()?;
        Ok(Received { results, accepted })
    }

    /// Takes in one PDU: its event ID, its result and whether it is new here; the error is for
    /// a PDU that is not even an event of a known room.
    async fn receive_pdu(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        object: CanonicalJsonObject,
    ) -> Result<(OwnedEventId, Result<(), String>, bool)> {
        let room_id = match object.get("room_id") {
            Some(CanonicalJsonValue::String(id)) => RoomId::parse(id).map_err(|e| Error::bad_json(e.to_string()))?,
            _ => return Err(Error::bad_json("A PDU without a room ID")),
        };
        let version = rooms.room(&room_id)?.version;
        let (pdu, object) = self.check_pdu(&version, object).await?;
        let event_id = pdu.event_id.clone();
        // The room's server ACL applies to the server that sent the PDU and the one whose
        // user wrote it.
        for server in [origin, pdu.sender.server_name()] {
            if !rooms.server_allowed(&room_id, server)? {
                self.metrics.pdu_received("rejected");
                return Ok((event_id, Err(format!("the room's server ACL denies {server}")), false));
            }
        }
        let outcome = match rooms.append_remote(pdu, object, None).await? {
            Intake::MissingPrev(missing, event) => {
                self.fetch_missing(rooms, origin, &room_id, &event_id, &missing).await;
                let (pdu, object) = *event;
                rooms.append_remote(pdu, object, None).await?
            }
            outcome => outcome,
        };
        let new = matches!(outcome, Intake::Accepted);
        let result = match outcome {
            Intake::Accepted => {
                self.metrics.pdu_received("accepted");
                Ok(())
            }
            Intake::Known => Ok(()),
            Intake::Rejected(reason) => {
                self.metrics.pdu_received("rejected");
                Err(reason)
            }
            Intake::SoftFailed(reason) => {
                self.metrics.pdu_received("soft_failed");
                Err(reason)
            }
            Intake::MissingPrev(missing, _) => Err(format!("{} previous events could not be had", missing.len())),
        };
        Ok((event_id, result, new))
    }

    /// Asks `origin` for the events between the room's forward extremities and `latest`, and
    /// takes them in oldest first. Failures are logged: the event that needed them then fails.
    async fn fetch_missing(&self, rooms: &Rooms, origin: &ServerName, room_id: &RoomId, latest: &OwnedEventId, missing: &[OwnedEventId]) {
        let Ok(record) = rooms.room(room_id) else { return };
        let mut request = get_missing_events::v1::Request::new(room_id.to_owned(), record.extremities.clone(), vec![latest.clone()]);
        request.limit = MAX_MISSING_EVENTS.into();
        let events = match self.send(origin, request).await {
            Ok(answer) => answer.events,
            Err(error) => {
                tracing::info!(%origin, %room_id, %error, missing = missing.len(), "missing events could not be fetched");
                return;
            }
        };
        let mut checked = Vec::new();
        for event in events.iter().take(MAX_MISSING_EVENTS as usize) {
            let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(event.get()) else {
                continue;
            };
            match self.check_pdu(&record.version, object).await {
                Ok(checked_pdu) => checked.push(checked_pdu),
                Err(error) => tracing::info!(%origin, %error, "a missing event failed its checks"),
            }
        }
        checked.sort_by_key(|(pdu, _)| pdu.depth);
        for (pdu, object) in checked {
            if pdu.room_id != room_id {
                continue;
            }
            if let Err(error) = rooms.append_remote(pdu, object, None).await {
                tracing::info!(%origin, %error, "a missing event could not be stored");
            }
        }
    }
}
