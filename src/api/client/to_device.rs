//! `PUT /sendToDevice/{eventType}/{txnId}`: messages to devices of users (one device, or `*` for
//! all of them); idempotent per transaction. Those for other servers' users go to their server
//! as one `m.direct_to_device` EDU each, whose message ID the transaction makes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use ruma::OwnedServerName;
use ruma::api::client::to_device::send_event_to_device;
use serde_json::{Map, Value, json};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
pub async fn send_event_to_device(
    State(services): State<Arc<Services>>,
    req: Ruma<send_event_to_device::v3::Request>,
) -> HandlerResult<send_event_to_device::v3::Response> {
    let session = req.session()?;
    let request = &req.body;
    if services
        .to_device
        .was_sent(&session.user_id, &session.device_id, request.txn_id.as_str())?
    {
        return Ok(RumaResponse(send_event_to_device::v3::Response::new()));
    }
    let mut deliveries = Vec::new();
    let mut remote: BTreeMap<OwnedServerName, Map<String, Value>> = BTreeMap::new();
    for (user, devices) in &request.messages {
        if user.server_name() != services.config.server_name {
            services.federation.check_server(user.server_name())?;
            let messages = devices
                .iter()
                .map(|(target, content)| Ok((target.to_string(), serde_json::from_str(content.json().get())?)))
                .collect::<Result<Map<String, Value>, serde_json::Error>>()?;
            remote
                .entry(user.server_name().to_owned())
                .or_default()
                .insert(user.to_string(), Value::Object(messages));
            continue;
        }
        deliveries.extend(services.to_device_deliveries(user, devices)?);
    }
    // A retry after a crash between the two sends the EDUs again with the same message ID,
    // which their servers take once.
    let message_id = format!("{}/{}/{}", session.user_id.localpart(), session.device_id, request.txn_id);
    for (server, messages) in remote {
        let content = json!({
            "sender": session.user_id, "type": request.event_type.to_string(),
            "message_id": message_id, "messages": messages,
        });
        services.rooms.send_edu(
            BTreeSet::from([server]),
            &json!({ "edu_type": "m.direct_to_device", "content": content }),
        )?;
    }
    services.to_device.send(
        &session.user_id,
        &session.device_id,
        request.txn_id.as_str(),
        &request.event_type.to_string(),
        deliveries,
    )?;
    Ok(RumaResponse(send_event_to_device::v3::Response::new()))
}
