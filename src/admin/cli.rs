//! `hearth admin …` on the command line: through the running server's admin socket, or on
//! the store directly when the server is stopped. Exit codes: 0 done, 1 the operation failed,
//! 2 bad usage, 3 neither the server nor the store could be reached.

use std::process::ExitCode;

use tokio::net::UnixStream;

use super::appservices::AppserviceCommand;
use super::socket::{SocketReply, send};
use super::{AdminCommand, AdminOutput, execute};
use crate::config::Config;
use crate::service::Services;
use crate::store::Store;

/// Exit code when the operation itself failed.
const FAILED: u8 = 1;
/// Exit code when neither the server nor the store could be reached.
const UNREACHABLE: u8 = 3;

/// Runs one admin command and prints its outcome.
pub async fn run(config: Config, command: AdminCommand, json: bool) -> ExitCode {
    // The server may run in another directory: paths go to it absolute.
    let command = match command {
        AdminCommand::Backup { dir, keep } => AdminCommand::Backup {
            dir: std::path::absolute(&dir).unwrap_or(dir),
            keep,
        },
        AdminCommand::Appservice(AppserviceCommand::Register { file }) => AdminCommand::Appservice(AppserviceCommand::Register {
            file: std::path::absolute(&file).unwrap_or(file),
        }),
        AdminCommand::Restore { dir } => return restore(&config, &dir, json).await,
        AdminCommand::Migrate { url, .. } => {
            return while_stopped(&config, "migrating", json, || super::migrate::migrate(&config, &url)).await;
        }
        other => other,
    };
    let reply = match UnixStream::connect(config.admin_socket_path()).await {
        Ok(stream) => match send(stream, &command).await {
            Ok(reply) => reply,
            Err(error) => return unreachable(&format!("the admin socket failed: {error}")),
        },
        Err(_) => match run_offline(config, command).await {
            Ok(reply) => reply,
            Err(message) => return unreachable(&message),
        },
    };
    print_reply(reply, json)
}

/// Prints an outcome; its exit code.
fn print_reply(reply: SocketReply, json: bool) -> ExitCode {
    match reply {
        SocketReply::Ok(output) => {
            print_output(&output, json);
            ExitCode::SUCCESS
        }
        SocketReply::Error(message) => {
            if json {
                println!("{}", serde_json::json!({ "error": message }));
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(FAILED)
        }
    }
}

fn print_output(output: &AdminOutput, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(output).unwrap_or_default());
    } else {
        println!("{output}");
    }
}

fn unreachable(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(UNREACHABLE)
}

/// Runs what needs the server stopped (`doing` it: "restoring", "migrating") only while no
/// server answers on the admin socket.
async fn while_stopped(config: &Config, doing: &str, json: bool, operation: impl FnOnce() -> Result<String, String>) -> ExitCode {
    if UnixStream::connect(config.admin_socket_path()).await.is_ok() {
        return print_reply(SocketReply::Error(format!("the server is running: stop it before {doing}")), json);
    }
    match operation() {
        Ok(message) => print_reply(SocketReply::Ok(AdminOutput::Done(message)), json),
        Err(message) => print_reply(SocketReply::Error(message), json),
    }
}

/// Restores a backup (RocksDB's) into the data directory.
async fn restore(config: &Config, dir: &std::path::Path, json: bool) -> ExitCode {
    while_stopped(config, "restoring", json, || {
        if config.storage.backend != crate::config::StorageBackend::Rocksdb {
            return Err("the store is in PostgreSQL: restore it with PostgreSQL's tools (a backup here is RocksDB's)".into());
        }
        super::backup::restore(&config.data_dir, dir)
    })
    .await
}

/// The server is not running: open the store ourselves.
async fn run_offline(config: Config, command: AdminCommand) -> Result<SocketReply, String> {
    let store = Store::open(&config.data_dir, &config.storage).map_err(|e| {
        format!(
            "no server answers on {} and the store in {} cannot be opened: {e}",
            config.admin_socket_path().display(),
            config.data_dir.display()
        )
    })?;
    let services = Services::new(config, store).map_err(|e| e.to_string())?;
    let reply = match execute(&services, command).await {
        Ok(output) => SocketReply::Ok(output),
        Err(error) => SocketReply::Error(error.to_string()),
    };
    services.store.flush().map_err(|e| e.to_string())?;
    Ok(reply)
}
