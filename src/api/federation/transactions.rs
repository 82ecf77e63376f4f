//! `PUT /_matrix/federation/v1/send/{txnId}`: a transaction of PDUs and EDUs from another server.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::transactions::send_transaction_message;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `PUT /_matrix/federation/v1/send/{txnId}`
pub async fn send_transaction_message(
    State(services): State<Arc<Services>>,
    req: Ruma<send_transaction_message::v1::Request>,
) -> HandlerResult<send_transaction_message::v1::Response> {
    let origin = req.origin()?;
    if req.body.origin != origin {
        return Err(Error::forbidden("The transaction's origin is not the server that signed it"));
    }
    let received = services
        .federation
        .receive_transaction(
            &services.rooms,
            origin,
            req.body.transaction_id.as_str(),
            &req.body.pdus,
            req.body.edus.len(),
        )
        .await?;
    if received.new_transaction {
        services.receive_edus(origin, &req.body.edus).await;
        services
            .federation
            .record_transaction(origin, req.body.transaction_id.as_str(), &received.results)?;
    }
    // Events new here notify the local members, as local ones do.
    for event_id in &received.accepted {
        services.notify_event(event_id, None).await?;
    }
    Ok(RumaResponse(send_transaction_message::v1::Response::new(received.results)))
}
