//! `/user/{userId}/filter`: store sync filters and fetch them back.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::client::filter::{create_filter, get_filter};

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse};
use crate::error::Error;
use crate::service::Services;

/// `POST /_matrix/client/v3/user/{userId}/filter`
pub async fn create_filter(
    State(services): State<Arc<Services>>,
    req: Ruma<create_filter::v3::Request>,
) -> HandlerResult<create_filter::v3::Response> {
    req.require_owner(&req.body.user_id, "You cannot create filters for another user")?;
    let filter_id = services.filters.create(&req.body.user_id, &req.body.filter)?;
    Ok(RumaResponse(create_filter::v3::Response::new(filter_id)))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
pub async fn get_filter(
    State(services): State<Arc<Services>>,
    req: Ruma<get_filter::v3::Request>,
) -> HandlerResult<get_filter::v3::Response> {
    req.require_owner(&req.body.user_id, "You cannot read another user's filters")?;
    let filter = services
        .filters
        .get(&req.body.user_id, &req.body.filter_id)?
        .ok_or_else(|| Error::not_found("No such filter"))?;
    Ok(RumaResponse(get_filter::v3::Response::new(filter)))
}
