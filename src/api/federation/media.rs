//! Media for other servers: `GET /_matrix/federation/v1/media/download/{mediaId}` and
//! `/thumbnail/{mediaId}`, this server's media as `multipart/mixed` (an empty metadata object,
//! then the file), so their users see images posted here.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::authenticated_media::{Content, ContentMetadata, FileOrLocation, get_content, get_content_thumbnail};
use ruma::http_headers::{ContentDisposition, ContentDispositionType};

use crate::api::client::content_repo::ThumbnailSize;
use crate::api::ruma::{HandlerResult, Ruma};
use crate::error::Result;
use crate::service::Services;
use crate::service::media::ServedFile;

/// A stored file as the multipart answer's content.
async fn file_content(file: ServedFile) -> Result<FileOrLocation> {
    let bytes = tokio::fs::read(&file.path).await?;
    let mut disposition = ContentDisposition::new(ContentDispositionType::Attachment);
    disposition.filename = file.filename;
    Ok(FileOrLocation::File(Content::new(bytes, file.content_type, disposition)))
}

/// `GET /_matrix/federation/v1/media/download/{mediaId}`
pub async fn get_content(
    State(services): State<Arc<Services>>,
    req: Ruma<get_content::v1::Request>,
) -> HandlerResult<get_content::v1::Response> {
    let request = &req.body;
    let content = services
        .media
        .content(&services.config.server_name, &request.media_id, request.timeout_ms)
        .await?;
    let file = file_content(services.media.original(&content)).await?;
    Ok(crate::api::ruma::RumaResponse(get_content::v1::Response::new(
        ContentMetadata::new(),
        file,
    )))
}

/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`
pub async fn get_content_thumbnail(
    State(services): State<Arc<Services>>,
    req: Ruma<get_content_thumbnail::v1::Request>,
) -> HandlerResult<get_content_thumbnail::v1::Response> {
    let request = &req.body;
    let content = services
        .media
        .content(&services.config.server_name, &request.media_id, request.timeout_ms)
        .await?;
    let size = ThumbnailSize::new(request.width, request.height, request.method.clone(), request.animated);
    let file = file_content(size.of(&services, &content).await?).await?;
    Ok(crate::api::ruma::RumaResponse(get_content_thumbnail::v1::Response::new(
        ContentMetadata::new(),
        file,
    )))
}
