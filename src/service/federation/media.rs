//! Media of other servers: fetched over federation (`/_matrix/federation/v1/media/download`,
//! following a `Location` the other server may answer with) the first time a local client asks
//! for it, stored like local media (the size limit, the content type and file name the other
//! server gave) and served from here from then on. One fetch per media ID at a time.

use std::time::Duration;

use bytes::Bytes;
use ruma::ServerName;
use ruma::api::federation::authenticated_media::{Content, FileOrLocation, get_content};
use ruma::http_headers::{ContentDisposition, ContentDispositionType};

use super::Federation;
use super::client::read_limited;
use crate::error::{Error, Result};
use crate::service::media::Media;

/// How long fetching a remote media file may take beyond the client's own timeout.
const FETCH_GRACE: Duration = Duration::from_secs(20);

impl Federation {
    /// Makes sure the content of `mxc://{server}/{media_id}` is stored here, fetching it from
    /// `server` if it is not; `timeout` is how long the other server may wait for a pending
    /// upload.
    pub async fn fetch_media(&self, media: &Media, server: &ServerName, media_id: &str, timeout: Duration) -> Result<()> {
        if media.has_content(server, media_id)? {
            return Ok(());
        }
        let _fetching = self.media_fetches.lock(format!("{server}/{media_id}")).await;
        if media.has_content(server, media_id)? {
            return Ok(());
        }
        let mut request = get_content::v1::Request::new(media_id.to_owned());
        request.timeout_ms = timeout;
        let answer = tokio::time::timeout(timeout + FETCH_GRACE, self.send(server, request))
            .await
            .map_err(|_| Error::bad_gateway(format!("{server} did not send the media in time")))??;
        let content = match answer.content {
            FileOrLocation::File(content) => content,
            FileOrLocation::Location(url) => self.fetch_location(&url, media.max_upload_size()).await?,
            _ => return Err(Error::bad_gateway(format!("{server} answered with neither a file nor a location"))),
        };
        let filename = content.content_disposition.and_then(|disposition| disposition.filename);
        let body = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(content.file))]);
        let upload = media.receive(body).await?;
        media.store_remote(upload, server, media_id, content.content_type, filename).await
    }

    /// Fetches a media file from the URL another server pointed at (no authentication, the
    /// same network policy as any destination).
    async fn fetch_location(&self, url: &str, limit: u64) -> Result<Content> {
        let url = url::Url::parse(url).map_err(|e| Error::bad_gateway(format!("a media location that is not a URL: {e}")))?;
        self.policy.check_url(&url)?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Error::bad_gateway(format!("fetching media: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::bad_gateway(format!("fetching media: {}", response.status())));
        }
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let file = read_limited(response, usize::try_from(limit).unwrap_or(usize::MAX)).await?;
        Ok(Content::new(
            file,
            content_type,
            ContentDisposition::new(ContentDispositionType::Attachment),
        ))
    }
}
