//! `/_matrix/identity/v2/hash_details` and `lookup`: finding users by the addresses they
//! published, as peppered SHA-256 hashes (or in the clear, with the `none` algorithm).

use std::sync::Arc;

use axum::extract::State;
use ruma::api::identity_service::lookup::{IdentifierHashingAlgorithm, get_hash_parameters, lookup_3pid};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `GET /_matrix/identity/v2/hash_details`
pub async fn hash_details(
    State(services): State<Arc<Services>>,
    req: Ruma<get_hash_parameters::v2::Request>,
) -> HandlerResult<get_hash_parameters::v2::Response> {
    req.identity_user()?;
    let algorithms = vec![IdentifierHashingAlgorithm::Sha256, IdentifierHashingAlgorithm::None];
    Ok(RumaResponse(get_hash_parameters::v2::Response::new(
        services.identity.pepper().to_owned(),
        algorithms,
    )))
}

/// `POST /_matrix/identity/v2/lookup`
pub async fn lookup(
    State(services): State<Arc<Services>>,
    req: Ruma<lookup_3pid::v2::Request>,
) -> HandlerResult<lookup_3pid::v2::Response> {
    req.identity_user()?;
    let algorithm = match &req.body.algorithm {
        IdentifierHashingAlgorithm::Sha256 => "sha256",
        IdentifierHashingAlgorithm::None => "none",
        other => return Err(Error::invalid_param(format!("Unsupported algorithm {}", other.as_str()))),
    };
    if algorithm == "sha256" && req.body.pepper != services.identity.pepper() {
        return Err(Error::invalid_pepper("The pepper is not the one of hash_details"));
    }
    let mappings = services.identity.lookup(algorithm, &req.body.addresses)?;
    Ok(RumaResponse(lookup_3pid::v2::Response::new(mappings)))
}
