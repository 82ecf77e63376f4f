//! URL previews (`/media/preview_url`), off unless `media.url_preview.enabled`.
//!
//! The server fetches a page a user is about to share and returns its OpenGraph data; a preview
//! image is stored in the media repository and returned as an `mxc://` URI. Because the server
//! fetches what a user names, every connection goes through the network policy's resolver and the redirect
//! policy, which refuse addresses in `blocked_networks` (loopback, private, link-local, … by
//! default) unless they are in `allowed_networks`. Pages are read up to `max_page_size` bytes,
//! and previews are kept in memory for an hour.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ruma::UserId;
use scraper::{Html, Selector};
use serde_json::{Map, Value, json};

use crate::config;
use crate::error::{Error, Result};

use super::media::Media;
use super::network::{AddressPolicy, GuardedResolver};

/// How long a preview is served from memory.
const CACHE_LIFETIME: Duration = Duration::from_secs(3600);
/// The most previews kept in memory.
const CACHE_ENTRIES: usize = 1000;
/// The most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// The URL preview service.
pub struct UrlPreviews {
    config: config::UrlPreview,
    policy: AddressPolicy,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (Instant, Arc<Value>)>>,
}

impl UrlPreviews {
    pub fn new(config: config::UrlPreview) -> Result<UrlPreviews> {
        let policy = AddressPolicy {
            blocked: config.blocked_networks.clone(),
            allowed: config.allowed_networks.clone(),
        };
        let redirect_policy = policy.clone();
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone())))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if redirect_policy.check_url(attempt.url()).is_err() {
                    attempt.error("redirect to a blocked address")
                } else {
                    attempt.follow()
                }
            }))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("Hearth/", env!("CARGO_PKG_VERSION"), " (URL preview)"))
            .build()
            .map_err(|e| Error::Internal(format!("URL preview client: {e}")))?;
        Ok(UrlPreviews {
            config,
            policy,
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether previews are offered at all.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The OpenGraph preview of `url`, from memory if it was made within the hour.
    pub async fn preview(&self, media: &Media, user: &UserId, url: &str) -> Result<Arc<Value>> {
        if let Some(cached) = self.cached(url) {
            return Ok(cached);
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| Error::invalid_param(format!("Not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid_param("Only http and https URLs can be previewed"));
        }
        self.policy.check_url(&parsed)?;
        let response = self.fetch(parsed).await?;
        let final_url = response.url().clone();
        let content_type = media_type_of(&response);
        let preview = if content_type.starts_with("image/") {
            let mut og = Map::new();
            self.store_image(media, user, response, &content_type, &mut og).await?;
            Value::Object(og)
        } else if content_type == "text/html" || content_type == "application/xhtml+xml" {
            let page = self.read_page(response).await?;
            let mut og = opengraph(&page);
            if let Some(image) = og.remove("og:image").and_then(|v| v.as_str().map(str::to_owned)) {
                // A preview without its image is still a preview.
                if let Ok(image_url) = final_url.join(&image) {
                    let _ = self.fetch_image(media, user, image_url, &mut og).await;
                }
            }
            Value::Object(og)
        } else {
            json!({})
        };
        let preview = Arc::new(preview);
        self.remember(url, preview.clone());
        Ok(preview)
    }

    fn cached(&self, url: &str) -> Option<Arc<Value>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(url)
            .filter(|(made, _)| made.elapsed() < CACHE_LIFETIME)
            .map(|(_, preview)| preview.clone())
    }

    fn remember(&self, url: &str, preview: Arc<Value>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (made, _)| made.elapsed() < CACHE_LIFETIME);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(url.to_owned(), (Instant::now(), preview));
    }

    async fn fetch(&self, url: reqwest::Url) -> Result<reqwest::Response> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Error::bad_gateway(format!("Could not fetch the URL: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::bad_gateway(format!("The URL answered {}", response.status())));
        }
        Ok(response)
    }

    /// Reads an HTML page, at most `max_page_size` bytes of it.
    async fn read_page(&self, response: reqwest::Response) -> Result<String> {
        let mut page = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::bad_gateway(format!("Could not read the page: {e}")))?;
            let room = self.config.max_page_size.saturating_sub(page.len());
            page.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if page.len() >= self.config.max_page_size {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&page).into_owned())
    }

    async fn fetch_image(&self, media: &Media, user: &UserId, url: reqwest::Url, og: &mut Map<String, Value>) -> Result<()> {
        self.policy.check_url(&url)?;
        let response = self.fetch(url).await?;
        let content_type = media_type_of(&response);
        if !content_type.starts_with("image/") {
            return Err(Error::bad_gateway("The preview image is not an image"));
        }
        self.store_image(media, user, response, &content_type, og).await
    }

    /// Stores a fetched image as media and describes it in `og`.
    async fn store_image(
        &self,
        media: &Media,
        user: &UserId,
        response: reqwest::Response,
        content_type: &str,
        og: &mut Map<String, Value>,
    ) -> Result<()> {
        let upload = media.receive(response.bytes_stream()).await?;
        let size = upload.size();
        let uri = media.create(upload, user, Some(content_type.to_owned()), None).await?;
        if let Ok((width, height)) = media.image_dimensions(&uri) {
            og.insert("og:image:width".into(), json!(width));
            og.insert("og:image:height".into(), json!(height));
        }
        og.insert("og:image".into(), json!(uri));
        og.insert("og:image:type".into(), json!(content_type));
        og.insert("matrix:image:size".into(), json!(size));
        Ok(())
    }
}

/// The media type a response says it carries, lowercased, without parameters.
fn media_type_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(super::media::media_type)
        .unwrap_or_default()
}

/// The OpenGraph properties of a page, with the `<title>` and the meta description standing in
/// for a missing `og:title` and `og:description`.
fn opengraph(page: &str) -> Map<String, Value> {
    let document = Html::parse_document(page);
    let mut og = Map::new();
    let meta = Selector::parse("meta[property], meta[name]").expect("valid selector");
    let mut description = None;
    for element in document.select(&meta) {
        let element = element.value();
        let (Some(name), Some(content)) = (element.attr("property").or_else(|| element.attr("name")), element.attr("content")) else {
            continue;
        };
        if name.starts_with("og:") {
            og.entry(name.to_owned()).or_insert_with(|| json!(content));
        } else if name.eq_ignore_ascii_case("description") && description.is_none() {
            description = Some(content.to_owned());
        }
    }
    if let Some(description) = description {
        og.entry("og:description".to_owned()).or_insert_with(|| json!(description));
    }
    if !og.contains_key("og:title") {
        let title = Selector::parse("title").expect("valid selector");
        if let Some(element) = document.select(&title).next() {
            let text = element.text().collect::<String>().trim().to_owned();
            if !text.is_empty() {
                og.insert("og:title".into(), json!(text));
            }
        }
    }
    og
}
