//! The admin socket: a Unix socket (mode 0600) in the data directory through which
//! `hearth admin` reaches a running server. One JSON [`AdminCommand`] per line in, one JSON
//! [`SocketReply`] per line out.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::{AdminCommand, AdminOutput, execute};
use crate::service::Services;

/// The answer to one command.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketReply {
    Ok(AdminOutput),
    Error(String),
}

/// Binds the socket and serves it in the background.
pub fn listen(services: Arc<Services>) -> std::io::Result<JoinHandle<()>> {
    let path = services.config.admin_socket_path();
    // A socket file left by a crashed server; the store's lock already proved none is running.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(services.clone(), stream));
        }
    }))
}

async fn serve_connection(services: Arc<Services>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match serde_json::from_str::<AdminCommand>(&line) {
            Ok(command) => {
                tracing::info!(command = command.name(), "admin command");
                let executed = async {
                    let output = execute(&services, command).await?;
                    // What the command wrote is fsynced (and visible here) before it is reported done.
                    services.store.durable().await?;
                    services.rooms.stream().heard_back().await;
                    Ok::<_, crate::error::Error>(output)
                }
                .await;
                match executed {
                    Ok(output) => SocketReply::Ok(output),
                    Err(error) => SocketReply::Error(error.to_string()),
                }
            }
            Err(error) => SocketReply::Error(format!("malformed admin command: {error}")),
        };
        let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
        bytes.push(b'\n');
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Sends one command over a connected socket and reads the reply.
pub async fn send(stream: UnixStream, command: &AdminCommand) -> std::io::Result<SocketReply> {
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(command)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    let line = BufReader::new(read)
        .lines()
        .next_line()
        .await?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the admin socket"))?;
    Ok(serde_json::from_str(&line)?)
}
