//! `GET /_matrix/federation/v1/version`: which server software this is.

use ruma::api::federation::discovery::get_server_version;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};

/// `GET /_matrix/federation/v1/version`
pub async fn get_server_version(_: Ruma<get_server_version::v1::Request>) -> HandlerResult<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Hearth".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(RumaResponse(response))
}
