//! `GET /capabilities`: what clients may do on this server.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use ruma::RoomVersionId;
#[allow(deprecated)]
use ruma::api::client::discovery::get_capabilities::v3::{
    Capabilities, ChangePasswordCapability, GetLoginTokenCapability, Request, Response, RoomVersionStability, RoomVersionsCapability,
    SetAvatarUrlCapability, SetDisplayNameCapability, ThirdPartyIdChangesCapability,
};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::service::Services;

/// `GET /_matrix/client/v3/capabilities`
#[allow(deprecated)]
pub async fn get_capabilities(State(services): State<Arc<Services>>, _: Ruma<Request>) -> HandlerResult<Response> {
    let mut capabilities = Capabilities::new();
    capabilities.change_password = ChangePasswordCapability::new(true);
    let available = BTreeMap::from([
        (RoomVersionId::V10, RoomVersionStability::Stable),
        (RoomVersionId::V11, RoomVersionStability::Stable),
        (RoomVersionId::V12, RoomVersionStability::Stable),
    ]);
    capabilities.room_versions = RoomVersionsCapability::new(RoomVersionId::V12, available);
    capabilities.set_displayname = SetDisplayNameCapability::new(true);
    capabilities.set_avatar_url = SetAvatarUrlCapability::new(true);
    // A logged-in device can sign in another one (`POST /login/get_token`).
    capabilities.get_login_token = GetLoginTokenCapability::new(true);
    // Email addresses can be added and removed where mail can confirm them.
    capabilities.thirdparty_id_changes = ThirdPartyIdChangesCapability::new(services.mail.enabled());
    Ok(RumaResponse(Response::new(capabilities)))
}
