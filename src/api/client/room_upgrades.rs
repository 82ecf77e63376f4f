//! `POST /rooms/{roomId}/upgrade`.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::room::upgrade_room;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `POST /_matrix/client/v3/rooms/{roomId}/upgrade`
pub async fn upgrade_room(
    State(services): State<Arc<Services>>,
    req: Ruma<upgrade_room::v3::Request>,
) -> HandlerResult<upgrade_room::v3::Response> {
    services.accounts.check_not_suspended(req.user_id()?)?;
    let request = &req.body;
    let new = services
        .rooms
        .upgrade(
            &request.room_id,
            req.user_id()?,
            &request.new_version,
            request.additional_creators.clone(),
        )
        .await?;
    Ok(RumaResponse(upgrade_room::v3::Response::new(new)))
}
