//! Keys: `GET /_matrix/key/v2/server` (this server's signing key, self-signed) and the notary
//! `GET /_matrix/key/v2/query/{serverName}` and `POST /_matrix/key/v2/query` (other servers'
//! keys as fetched, co-signed by this server).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::discovery::{get_remote_server_keys, get_remote_server_keys_batch, get_server_keys};
use ruma::serde::Raw;
use ruma::{CanonicalJsonObject, MilliSecondsSinceUnixEpoch};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::{Error, Result};
use crate::service::Services;

/// The most servers one batch query may ask about.
const MAX_BATCH_SERVERS: usize = 50;

fn raw<T>(document: &CanonicalJsonObject) -> Result<Raw<T>> {
    let raw = serde_json::value::to_raw_value(document).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Raw::from_json(raw))
}

/// `GET /_matrix/key/v2/server`
pub async fn get_server_keys(
    State(services): State<Arc<Services>>,
    _: Ruma<get_server_keys::v2::Request>,
) -> HandlerResult<get_server_keys::v2::Response> {
    let document = services.server_key.signed_key_document(&services.config.server_name)?;
    Ok(RumaResponse(get_server_keys::v2::Response::new(raw(&document)?)))
}

/// `GET /_matrix/key/v2/query/{serverName}`
pub async fn get_remote_server_keys(
    State(services): State<Arc<Services>>,
    req: Ruma<get_remote_server_keys::v2::Request>,
) -> HandlerResult<get_remote_server_keys::v2::Response> {
    let minimum = u64::from(req.body.minimum_valid_until_ts.get());
    let documents = services.federation.notary_documents(&req.body.server_name, minimum).await?;
    let documents = documents.iter().map(raw).collect::<Result<_>>()?;
    Ok(RumaResponse(get_remote_server_keys::v2::Response::new(documents)))
}

/// `POST /_matrix/key/v2/query`
pub async fn get_remote_server_keys_batch(
    State(services): State<Arc<Services>>,
    req: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> HandlerResult<get_remote_server_keys_batch::v2::Response> {
    if req.body.server_keys.len() > MAX_BATCH_SERVERS {
        return Err(Error::bad_request(format!("At most {MAX_BATCH_SERVERS} servers per query")));
    }
    let now = MilliSecondsSinceUnixEpoch::now();
    let queries = req.body.server_keys.iter().map(|(server, criteria)| {
        let minimum = criteria
            .values()
            .filter_map(|criteria| criteria.minimum_valid_until_ts)
            .max()
            .unwrap_or(now);
        services.federation.notary_documents(server, u64::from(minimum.get()))
    });
    let mut documents = Vec::new();
    for found in futures_util::future::join_all(queries).await {
        for document in found? {
            documents.push(raw(&document)?);
        }
    }
    Ok(RumaResponse(get_remote_server_keys_batch::v2::Response::new(documents)))
}
