//! The content repository: uploads (`/_matrix/media/v3/upload`, `/_matrix/media/v1/create`),
//! the authenticated downloads and thumbnails of `/_matrix/client/v1/media`, their legacy
//! unauthenticated `/_matrix/media/v3` twins (off unless configured), URL previews (off unless
//! configured) and the media config.
//!
//! Requests are parsed with ruma's types. Uploads stream the body to disk instead of buffering
//! it, and downloads are served from the file (with `Range` support) instead of through ruma's
//! response types, which hold the whole file in memory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method as HttpMethod, StatusCode};
use ruma::api::client::authenticated_media::{
    get_content, get_content_as_filename, get_content_thumbnail, get_media_config, get_media_preview,
};
use ruma::api::client::media::{
    create_content, create_content_async, create_mxc_uri, get_content as legacy_get_content,
    get_content_as_filename as legacy_get_content_as_filename, get_content_thumbnail as legacy_get_content_thumbnail,
    get_media_config as legacy_get_media_config, get_media_preview as legacy_get_media_preview,
};
use ruma::http_headers::{ContentDisposition, ContentDispositionType};
use ruma::media::Method;
use ruma::{MilliSecondsSinceUnixEpoch, ServerName, UInt};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::api::ruma::{HandlerResult, Ruma, RumaResponse, RumaStreaming};
use crate::error::{Error, Result};
use crate::service::Services;
use crate::service::media::{Content, ServedFile, media_type};

/// Content types a browser may render inline from this origin without running scripts.
const INLINE_CONTENT_TYPES: [&str; 26] = [
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// Forbids anything served as media from running scripts or loading other content.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// Request headers passed on to the file server: ranges and conditional requests.
const FORWARDED_HEADERS: [header::HeaderName; 4] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

fn upload_size(services: &Services) -> UInt {
    UInt::new(services.media.max_upload_size()).unwrap_or(UInt::MAX)
}

/// `GET /_matrix/client/v1/media/config`
pub async fn get_media_config(
    State(services): State<Arc<Services>>,
    _req: Ruma<get_media_config::v1::Request>,
) -> HandlerResult<get_media_config::v1::Response> {
    Ok(RumaResponse(get_media_config::v1::Response::new(upload_size(&services))))
}

/// `GET /_matrix/media/v3/config`
#[allow(deprecated)] // served for clients that predate authenticated media
pub async fn legacy_get_media_config(
    State(services): State<Arc<Services>>,
    _req: Ruma<legacy_get_media_config::v3::Request>,
) -> HandlerResult<legacy_get_media_config::v3::Response> {
    Ok(RumaResponse(legacy_get_media_config::v3::Response::new(upload_size(&services))))
}

/// Refuses a body whose announced length is over the limit before reading it.
fn check_announced_size(services: &Services, headers: &HeaderMap) -> Result<()> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > services.media.max_upload_size()) {
        return Err(Error::too_large(format!(
            "The upload is larger than this server's limit of {} bytes",
            services.media.max_upload_size()
        )));
    }
    Ok(())
}

/// `POST /_matrix/media/v3/upload`
pub async fn create_content(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    req: RumaStreaming<create_content::v3::Request>,
) -> HandlerResult<create_content::v3::Response> {
    let user_id = req.request.user_id()?.to_owned();
    services.accounts.check_not_suspended(&user_id)?;
    check_announced_size(&services, &headers)?;
    services.rate_limits.check_upload(&user_id)?;
    let upload = services.media.receive(req.body.into_data_stream()).await?;
    let request = req.request.body;
    let content_uri = services
        .media
        .create(upload, &user_id, request.content_type, request.filename)
        .await?;
    Ok(RumaResponse(create_content::v3::Response::new(content_uri)))
}

/// `POST /_matrix/media/v1/create`
pub async fn create_mxc_uri(
    State(services): State<Arc<Services>>,
    req: Ruma<create_mxc_uri::v1::Request>,
) -> HandlerResult<create_mxc_uri::v1::Response> {
    let user_id = req.user_id()?;
    services.rate_limits.check_upload(user_id)?;
    services.accounts.check_not_suspended(user_id)?;
    let (content_uri, expires_ts) = services.media.reserve(user_id).await?;
    let mut response = create_mxc_uri::v1::Response::new(content_uri);
    response.unused_expires_at = UInt::new(expires_ts).map(MilliSecondsSinceUnixEpoch);
    Ok(RumaResponse(response))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`
pub async fn create_content_async(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    req: RumaStreaming<create_content_async::v3::Request>,
) -> Result<axum::Json<serde_json::Value>> {
    let user_id = req.request.user_id()?.to_owned();
    services.accounts.check_not_suspended(&user_id)?;
    let request = req.request.body;
    services.media.check_reserved(&request.server_name, &request.media_id, &user_id)?;
    check_announced_size(&services, &headers)?;
    let upload = services.media.receive(req.body.into_data_stream()).await?;
    services
        .media
        .fill_reserved(upload, &request.media_id, &user_id, request.content_type, request.filename)
        .await?;
    // ruma's response type for this endpoint is an empty object it offers no way to build.
    Ok(axum::Json(serde_json::json!({})))
}

/// The download and thumbnail endpoints of both APIs differ only in their request type and
/// whether they are the legacy ones: each handler is this one, with its own request and call.
macro_rules! media_handler {
    ($(#[$attr:meta])* $name:ident, $request_type:ty, legacy: $legacy:literal, |$services:ident, $headers:ident, $request:ident| $call:expr) => {
        $(#[$attr])*
        pub async fn $name(State($services): State<Arc<Services>>, $headers: HeaderMap, req: Ruma<$request_type>) -> Result<Response> {
            if $legacy {
                check_legacy_allowed(&$services)?;
            }
            let $request = req.body;
            $call.await
        }
    };
}

media_handler!(
    /// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}`
    get_content,
    get_content::v1::Request,
    legacy: false,
    |services, headers, request| download(&services, &headers, &request.server_name, &request.media_id, request.timeout_ms, None)
);

media_handler!(
    /// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}`
    get_content_as_filename,
    get_content_as_filename::v1::Request,
    legacy: false,
    |services, headers, request| {
        let filename = Some(request.filename);
        download(&services, &headers, &request.server_name, &request.media_id, request.timeout_ms, filename)
    }
);

media_handler!(
    /// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`
    get_content_thumbnail,
    get_content_thumbnail::v1::Request,
    legacy: false,
    |services, headers, request| {
        let size = ThumbnailSize::new(request.width, request.height, request.method, request.animated);
        thumbnail(&services, &headers, &request.server_name, &request.media_id, request.timeout_ms, size)
    }
);

media_handler!(
    /// `GET /_matrix/media/v3/download/{serverName}/{mediaId}` (legacy, unauthenticated)
    #[allow(deprecated)] // served for clients that predate authenticated media
    legacy_get_content,
    legacy_get_content::v3::Request,
    legacy: true,
    |services, headers, request| download(&services, &headers, &request.server_name, &request.media_id, request.timeout_ms, None)
);

media_handler!(
    /// `GET /_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}` (legacy, unauthenticated)
    #[allow(deprecated)] // served for clients that predate authenticated media
    legacy_get_content_as_filename,
    legacy_get_content_as_filename::v3::Request,
    legacy: true,
    |services, headers, request| {
        let filename = Some(request.filename);
        download(&services, &headers, &request.server_name, &request.media_id, request.timeout_ms, filename)
    }
);

media_handler!(
    /// `GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}` (legacy, unauthenticated)
    #[allow(deprecated)] // served for clients that predate authenticated media
    legacy_get_content_thumbnail,
    legacy_get_content_thumbnail::v3::Request,
    legacy: true,
    |services, headers, request| {
        let size = ThumbnailSize::new(request.width, request.height, request.method, request.animated);
        thumbnail(&services, &headers, &request.server_name, &request.media_id, request.timeout_ms, size)
    }
);

/// Refuses the legacy unauthenticated downloads unless the configuration allows them; the
/// answer is the one Synapse gives with authenticated media enforced.
fn check_legacy_allowed(services: &Services) -> Result<()> {
    if !services.media.legacy_download_allowed() {
        return Err(Error::not_found(
            "Unauthenticated media downloads are disabled here: use /_matrix/client/v1/media",
        ));
    }
    Ok(())
}

/// A URL preview, or 404 `M_UNRECOGNIZED` when previews are off (as Synapse answers then).
async fn preview(services: &Services, user_id: &ruma::UserId, url: &str) -> Result<Arc<serde_json::Value>> {
    if !services.url_previews.enabled() {
        return Err(Error::unrecognized("URL previews are disabled on this server"));
    }
    services.url_previews.preview(&services.media, user_id, url).await
}

/// `GET /_matrix/client/v1/media/preview_url`
pub async fn get_media_preview(
    State(services): State<Arc<Services>>,
    req: Ruma<get_media_preview::v1::Request>,
) -> HandlerResult<get_media_preview::v1::Response> {
    let preview = preview(&services, req.user_id()?, &req.body.url).await?;
    Ok(RumaResponse(get_media_preview::v1::Response::from_serialize(preview.as_ref())?))
}

/// `GET /_matrix/media/v3/preview_url`
#[allow(deprecated)] // served for clients that predate authenticated media
pub async fn legacy_get_media_preview(
    State(services): State<Arc<Services>>,
    req: Ruma<legacy_get_media_preview::v3::Request>,
) -> HandlerResult<legacy_get_media_preview::v3::Response> {
    let preview = preview(&services, req.user_id()?, &req.body.url).await?;
    Ok(RumaResponse(legacy_get_media_preview::v3::Response::from_serialize(
        preview.as_ref(),
    )?))
}

/// What a thumbnail request asks for.
pub struct ThumbnailSize {
    width: UInt,
    height: UInt,
    method: Option<Method>,
    animated: Option<bool>,
}

impl ThumbnailSize {
    pub fn new(width: UInt, height: UInt, method: Option<Method>, animated: Option<bool>) -> Self {
        ThumbnailSize {
            width,
            height,
            method,
            animated,
        }
    }

    /// The thumbnail of some content at this size (scaled unless asked to crop).
    pub async fn of(&self, services: &Services, content: &Content) -> Result<ServedFile> {
        let side = |value: UInt| u32::try_from(u64::from(value)).map_err(|_| Error::bad_request("Thumbnail dimensions are too large"));
        services
            .media
            .thumbnail(
                content,
                side(self.width)?,
                side(self.height)?,
                self.method.clone().unwrap_or(Method::Scale),
                self.animated.unwrap_or(false),
            )
            .await
    }
}

/// Fetches another server's media over federation the first time it is asked for here.
async fn fetch_if_remote(services: &Services, server_name: &ServerName, media_id: &str, timeout: Duration) -> Result<()> {
    if server_name != services.config.server_name {
        services
            .federation
            .fetch_media(&services.media, server_name, media_id, timeout)
            .await?;
    }
    Ok(())
}

async fn download(
    services: &Services,
    headers: &HeaderMap,
    server_name: &ServerName,
    media_id: &str,
    timeout: Duration,
    filename: Option<String>,
) -> Result<Response> {
    fetch_if_remote(services, server_name, media_id, timeout).await?;
    let content = services.media.content(server_name, media_id, timeout).await?;
    let mut file = services.media.original(&content);
    if filename.is_some() {
        file.filename = filename;
    }
    serve(file, headers).await
}

async fn thumbnail(
    services: &Services,
    headers: &HeaderMap,
    server_name: &ServerName,
    media_id: &str,
    timeout: Duration,
    size: ThumbnailSize,
) -> Result<Response> {
    fetch_if_remote(services, server_name, media_id, timeout).await?;
    let content = services.media.content(server_name, media_id, timeout).await?;
    serve(size.of(services, &content).await?, headers).await
}

/// Serves a stored file with the headers that keep it from harming the client's origin.
async fn serve(file: ServedFile, headers: &HeaderMap) -> Result<Response> {
    let mut request = http::Request::builder().method(HttpMethod::GET).uri("/");
    for name in FORWARDED_HEADERS {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Body::empty())
        .map_err(|e| Error::Internal(format!("file request: {e}")))?;
    let response = ServeFile::new(&file.path)
        .oneshot(request)
        .await
        .map_err(|e| Error::Internal(format!("serving {}: {e}", file.path.display())))?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(Error::Internal(format!("media file {} is missing", file.path.display())));
    }
    let mut response = response.map(Body::new);
    let inline = INLINE_CONTENT_TYPES.contains(&media_type(&file.content_type).as_str());
    let disposition = ContentDisposition::new(if inline {
        ContentDispositionType::Inline
    } else {
        ContentDispositionType::Attachment
    })
    .with_filename(file.filename);
    let response_headers = response.headers_mut();
    let header_value =
        |value: String| HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    response_headers.insert(header::CONTENT_TYPE, header_value(file.content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition.to_string()) {
        response_headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response_headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response_headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response_headers.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    Ok(response.into_response())
}
