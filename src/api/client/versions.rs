//! `GET /_matrix/client/versions`: the spec versions this server speaks.

use ruma::api::client::discovery::get_supported_versions;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};

/// The Client-Server spec versions announced to clients.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
];

/// Unstable features announced to clients: Simplified Sliding Sync (MSC4186), which is how
/// Element X and matrix-sdk discover it.
pub const UNSTABLE_FEATURES: &[&str] = &["org.matrix.simplified_msc3575"];

/// `GET /_matrix/client/versions`
pub async fn get_supported_versions(_: Ruma<get_supported_versions::Request>) -> HandlerResult<get_supported_versions::Response> {
    let versions = SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect();
    let mut response = get_supported_versions::Response::new(versions);
    response.unstable_features = UNSTABLE_FEATURES.iter().map(|feature| (feature.to_string(), true)).collect();
    Ok(RumaResponse(response))
}
