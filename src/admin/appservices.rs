//! `hearth admin appservice …`: register bridges and bots from their registration YAML while
//! the server runs, list them with what waits for each, and unregister them.

use std::path::PathBuf;

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AdminOutput;
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::appservices::Source;

/// `hearth admin appservice …`
#[derive(Debug, Clone, Subcommand, Serialize, Deserialize)]
pub enum AppserviceCommand {
    /// Register an appservice from its registration YAML (kept in the database; a bad file is
    /// refused with its line and the reason).
    Register { file: PathBuf },
    /// List the registered appservices: ID, URL, namespaces, where they were registered from,
    /// and how many events wait to be pushed to each.
    List,
    /// Unregister an appservice registered with `register` (what waits for it is dropped).
    Unregister { id: String },
}

impl AppserviceCommand {
    /// The command's name, for the admin socket's log.
    pub fn name(&self) -> &'static str {
        match self {
            AppserviceCommand::Register { .. } => "appservice register",
            AppserviceCommand::List => "appservice list",
            AppserviceCommand::Unregister { .. } => "appservice unregister",
        }
    }
}

pub async fn execute_appservice(services: &Services, command: AppserviceCommand) -> Result<AdminOutput> {
    match command {
        AppserviceCommand::Register { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::bad_request(format!("{}: {e}", file.display())))?;
            let appservice = services.appservices.register(&text).map_err(|error| {
                let (_, body) = error.status_and_body();
                Error::bad_request(format!("{}: {}", file.display(), body["error"].as_str().unwrap_or_default()))
            })?;
            services.ensure_appservice_user(&appservice).await?;
            Ok(AdminOutput::Done(format!(
                "registered appservice {} (its user {})",
                appservice.id(),
                appservice.sender
            )))
        }
        AppserviceCommand::List => {
            let depths = services.appservices.queue_depths()?;
            let list = services
                .appservices
                .list()
                .iter()
                .map(|appservice| {
                    let registration = &appservice.registration;
                    let source = match &appservice.source {
                        Source::File(file) => file.display().to_string(),
                        Source::Admin => "hearth admin".to_owned(),
                    };
                    json!({
                        "id": appservice.id(),
                        "url": registration.url,
                        "sender": appservice.sender,
                        "namespaces": registration.namespaces,
                        "rate_limited": registration.rate_limited == Some(true),
                        "protocols": appservice.protocols(),
                        "receives_ephemeral": appservice.receives_ephemeral,
                        "registered_by": source,
                        "queued": depths.get(appservice.id()).copied().unwrap_or(0),
                    })
                })
                .collect();
            Ok(AdminOutput::Details(serde_json::Value::Array(list)))
        }
        AppserviceCommand::Unregister { id } => {
            services.appservices.unregister(&id)?;
            Ok(AdminOutput::Done(format!("unregistered appservice {id}")))
        }
    }
}
