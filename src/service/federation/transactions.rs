//! Transactions from other servers (`PUT /send/{txnId}`): each PDU through the checks of
//! [`super::pdu`] and the room's intake, with what it needs and this server lacks fetched first
//! ([`super::gaps`]). A transaction is processed once per
//! origin and ID: a retry gets the stored answer.

use std::collections::BTreeMap;

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

/// Per-PDU results of a transaction.
pub type TransactionResults = BTreeMap<OwnedEventId, Result<(), String>>;

/// What a transaction did: its per-PDU results, and the events that are new here (for the
/// notifications they make).
pub struct Received {
    pub results: TransactionResults,
    pub accepted: Vec<OwnedEventId>,
    /// False for a transaction taken in before (its EDUs were too).
    pub new_transaction: bool,
}

impl Federation {
    /// Takes in a transaction's PDUs (its EDUs are taken in after them, by
    /// [`Services::receive_edus`](crate::service::Services::receive_edus)).
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
                new_transaction: false,
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
        Ok(Received {
            results,
            accepted,
            new_transaction: true,
        })
    }

    /// Records a transaction as taken in, PDUs and EDUs: a retry of it is answered from the
    /// record. Recorded only then, so a transaction cut short (the request dropped between its
    /// PDUs and its EDUs) is taken in whole when retried; a PDU already in is known, a to-device
    /// message already delivered is dropped by its message ID.
    pub fn record_transaction(&self, origin: &ServerName, transaction_id: &str, results: &TransactionResults) -> Result<()> {
        let mut batch = self.store.batch();
        batch.put_json(
            Table::FederationTransactions,
            &key(&[origin.as_bytes(), transaction_id.as_bytes()]),
            results,
        );
        batch.commit()?;
        Ok(())
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
        let outcome = self.take_in(rooms, origin, &version, pdu, object).await?;
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
}
