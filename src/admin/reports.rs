//! `hearth admin report …`: what users reported to the server's admins.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::AdminOutput;
use crate::error::Result;
use crate::service::Services;
use crate::service::reports::{Report, ReportTarget};

/// `hearth admin report …`
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum ReportCommand {
    /// List the open reports, oldest first (with --all, the resolved ones too).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Mark a report resolved.
    Resolve { id: u64 },
}

impl ReportCommand {
    /// The command's name, for the admin socket's log.
    pub fn name(&self) -> &'static str {
        match self {
            ReportCommand::List { .. } => "report list",
            ReportCommand::Resolve { .. } => "report resolve",
        }
    }
}

pub fn execute_report(services: &Services, command: ReportCommand) -> Result<AdminOutput> {
    match command {
        ReportCommand::List { all } => Ok(AdminOutput::Reports(services.reports.list(all)?)),
        ReportCommand::Resolve { id } => {
            services.reports.resolve(id)?;
            Ok(AdminOutput::Done(format!("report {id} is resolved")))
        }
    }
}

/// The reports as a table.
pub fn print(f: &mut fmt::Formatter<'_>, reports: &[Report]) -> fmt::Result {
    writeln!(
        f,
        "{:>5}  {:<20}  {:<9}  {:<32}  {:<60}  REASON",
        "ID", "RECEIVED", "STATE", "REPORTER", "ABOUT"
    )?;
    for report in reports {
        let received = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(report.received_ts));
        let about = match &report.target {
            ReportTarget::Event { room_id, event_id, sender } => format!("event {event_id} by {sender} in {room_id}"),
            ReportTarget::Room { room_id } => format!("room {room_id}"),
            ReportTarget::User { user_id } => format!("user {user_id}"),
        };
        let state = if report.resolved_ts.is_some() { "resolved" } else { "open" };
        let reason = report.reason.as_deref().unwrap_or("-");
        writeln!(
            f,
            "{:>5}  {received:<20}  {state:<9}  {:<32}  {about:<60}  {reason}",
            report.id, report.reporter
        )?;
    }
    write!(f, "{} report(s)", reports.len())
}
