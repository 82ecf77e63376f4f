//! `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`: read receipts, public or private,
//! for the main timeline or a thread.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::receipt::create_receipt::{self, v3::ReceiptType};
use ruma::events::receipt::ReceiptThread;
use serde_json::json;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
pub async fn create_receipt(
    State(services): State<Arc<Services>>,
    req: Ruma<create_receipt::v3::Request>,
) -> HandlerResult<create_receipt::v3::Response> {
    let user = req.user_id()?;
    let request = &req.body;
    services.rooms.check_joined(&request.room_id, user)?;
    let thread = match &request.thread {
        ReceiptThread::Unthreaded => String::new(),
        ReceiptThread::Main => "main".to_owned(),
        ReceiptThread::Thread(root) => root.to_string(),
        _ => return Err(Error::invalid_param("Unknown thread")),
    };
    match &request.receipt_type {
        ReceiptType::FullyRead => {
            let content = serde_json::value::to_raw_value(&json!({ "event_id": request.event_id }))?;
            services.account_data.set(user, Some(&request.room_id), "m.fully_read", &content)?;
        }
        receipt_type => {
            services
                .rooms
                .set_receipt(&request.room_id, user, receipt_type.as_str(), &request.event_id, &thread)?;
        }
    }
    Ok(RumaResponse(create_receipt::v3::Response::new()))
}
