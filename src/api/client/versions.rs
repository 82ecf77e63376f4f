//! `GET /_matrix/client/versions`: the spec versions this server speaks.

use ruma::api::client::discovery::get_supported_versions;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};

/// The Client-Server spec versions announced to clients.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
];

/// Unstable features announced to clients, which is how Element and matrix-sdk discover them:
/// Simplified Sliding Sync (MSC4186), dehydrated devices (MSC3814), room summaries (MSC3266,
/// stable in v1.15) and the admin suspend/lock endpoints (MSC4323, stable in v1.18).
pub const UNSTABLE_FEATURES: &[&str] = &[
    "org.matrix.simplified_msc3575",
    "org.matrix.msc3814",
    "im.nheko.summary",
    "uk.timedout.msc4323",
];

/// `GET /_matrix/client/versions`
pub async fn get_supported_versions(_: Ruma<get_supported_versions::Request>) -> HandlerResult<get_supported_versions::Response> {
    let versions = SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect();
    let mut response = get_supported_versions::Response::new(versions);
    response.unstable_features = UNSTABLE_FEATURES.iter().map(|feature| (feature.to_string(), true)).collect();
    Ok(RumaResponse(response))
}
