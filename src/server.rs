//! `hearth serve`: open the store, start the HTTP API and the admin socket, and shut down
//! cleanly on SIGTERM or Ctrl-C (in-flight requests finish, the store is flushed).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::admin;
use crate::config::Config;
use crate::service::Services;
use crate::store::Store;

/// Runs the server until a shutdown signal.
pub async fn serve(config: Config) -> Result<(), String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("cannot create data directory {}: {e}", config.data_dir.display()))?;
    let store = Store::open(&config.data_dir, &config.storage)
        .map_err(|e| format!("cannot open the store in {}: {e}", config.data_dir.display()))?;
    let services = Arc::new(Services::new(config, store).map_err(|e| e.to_string())?);
    announce_bootstrap_token(&services)?;

    let listener = TcpListener::bind(services.config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", services.config.listen))?;
    let metrics = match services.config.metrics.listen {
        Some(address) => Some(serve_metrics(services.clone(), address).await?),
        None => None,
    };
    let admin_socket = admin::socket::listen(services.clone()).map_err(|e| e.to_string())?;
    let federation_sender = services
        .federation
        .enabled()
        .then(|| tokio::spawn(crate::service::federation::sender::run(services.clone())));
    for appservice in services.appservices.list().iter() {
        services.ensure_appservice_user(appservice).await.map_err(|e| e.to_string())?;
    }
    let appservice_sender = tokio::spawn(crate::service::appservices::sender::run(services.clone()));
    let mail_tasks = services.mail.enabled().then(|| {
        [
            tokio::spawn(crate::service::mail::run(services.clone())),
            tokio::spawn(crate::service::email_notifications::run(services.clone())),
        ]
    });
    // A missing search index is rebuilt while the server serves (search finds more as it goes).
    {
        let services = services.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = services.rooms.rebuild_search_index_if_missing() {
                tracing::error!(%error, "the search index could not be built");
            }
        });
    }
    tracing::info!(
        server_name = %services.config.server_name,
        listen = %listener.local_addr().map_err(|e| e.to_string())?,
        "Hearth is serving"
    );
    let app = crate::api::app(services.clone());
    let shutdown = {
        let services = services.clone();
        async move {
            shutdown_signal().await;
            // Long polls return now rather than at their timeouts, so shutting down waits only
            // for requests doing work.
            services.rooms.stream().shut_down();
        }
    };
    let limits = &services.config.limits;
    match (&services.config.tls.certificate, &services.config.tls.key) {
        (Some(certificate), Some(key)) => {
            let acceptor = crate::tls::acceptor(certificate, key)?;
            let listener = crate::tls::TlsListener::new(listener, acceptor).map_err(|e| e.to_string())?;
            crate::http_server::serve(listener, app, limits, shutdown).await;
        }
        _ => {
            // Small responses go out at once instead of waiting on Nagle's algorithm (40 ms stalls).
            let listener = listener.tap_io(|stream| {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
            });
            crate::http_server::serve(listener, app, limits, shutdown).await;
        }
    }
    admin_socket.abort();
    appservice_sender.abort();
    if let Some(sender) = federation_sender {
        sender.abort();
    }
    for task in mail_tasks.into_iter().flatten() {
        task.abort();
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    let _ = std::fs::remove_file(services.config.admin_socket_path());
    services.store.flush().map_err(|e| format!("flushing the store: {e}"))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Starts the metrics listener; the task serves until aborted.
async fn serve_metrics(services: Arc<Services>, address: SocketAddr) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen for metrics on {address}: {e}"))?;
    tracing::info!(listen = %listener.local_addr().map_err(|e| e.to_string())?, "serving metrics");
    let app = crate::api::hearth::metrics::app(services);
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics listener failed");
        }
    }))
}

/// While the server has no account, log the one-time token that registers the first (admin)
/// account, whatever the registration mode.
fn announce_bootstrap_token(services: &Services) -> Result<(), String> {
    if !services.only_appservice_accounts().map_err(|e| e.to_string())? {
        return Ok(());
    }
    let token = services.registration_tokens.ensure_bootstrap().map_err(|e| e.to_string())?;
    tracing::warn!(
        registration_token = %token.token,
        "no account exists yet: register the first account (it becomes a server admin) with this one-time registration token, \
         or run `hearth admin user create NAME --admin`"
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
