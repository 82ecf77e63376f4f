//! Reports to the server's admins: a user reports an event, a room or a user, with a reason;
//! admins list them (`hearth admin report list`) and mark them resolved.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Counter, Store, Table};

/// What a report is about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportTarget {
    Event {
        room_id: OwnedRoomId,
        event_id: OwnedEventId,
        sender: OwnedUserId,
    },
    Room {
        room_id: OwnedRoomId,
    },
    User {
        user_id: OwnedUserId,
    },
}

/// One report, as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub id: u64,
    pub reporter: OwnedUserId,
    pub target: ReportTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub received_ts: u64,
    /// When an admin marked it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_ts: Option<u64>,
}

/// The reports of this server.
pub struct Reports {
    store: Store,
    numbers: Counter,
}

impl Reports {
    pub fn new(store: &Store) -> Result<Reports> {
        Ok(Reports {
            store: store.clone(),
            numbers: Counter::open(store, "report")?,
        })
    }

    /// Files a report; returns its number.
    pub fn file(&self, reporter: OwnedUserId, target: ReportTarget, reason: Option<String>) -> Result<u64> {
        let id = self.numbers.next()?;
        let report = Report {
            id,
            reporter,
            target,
            reason,
            received_ts: super::now_ms(),
            resolved_ts: None,
        };
        tracing::info!(id, reporter = %report.reporter, target = ?report.target, "a report was filed");
        let mut batch = self.store.batch();
        batch.put_json(Table::Reports, &id.to_be_bytes(), &report);
        batch.commit()?;
        Ok(id)
    }

    /// The reports, oldest first; only the open ones unless `resolved_too`.
    pub fn list(&self, resolved_too: bool) -> Result<Vec<Report>> {
        Ok(self
            .store
            .scan_json::<Report>(Table::Reports, &[])?
            .into_iter()
            .map(|(_, report)| report)
            .filter(|report| resolved_too || report.resolved_ts.is_none())
            .collect())
    }

    /// Marks a report resolved; 404 when there is no such report.
    pub fn resolve(&self, id: u64) -> Result<Report> {
        let mut report: Report = self
            .store
            .get_json(Table::Reports, &id.to_be_bytes())?
            .ok_or_else(|| Error::not_found(format!("No report {id}")))?;
        report.resolved_ts.get_or_insert_with(super::now_ms);
        let mut batch = self.store.batch();
        batch.put_json(Table::Reports, &id.to_be_bytes(), &report);
        batch.commit()?;
        Ok(report)
    }
}
