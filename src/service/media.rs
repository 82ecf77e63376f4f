//! The media repository: `mxc://` content uploaded by users, kept as files and thumbnailed.
//!
//! Files live under `<data_dir>/media/` and are content-addressed: `blobs/<ab>/<sha256>` holds
//! each distinct content once, however many media IDs point at it, and
//! `thumbnails/<ab>/<sha256>/<w>x<h>-<method>` its thumbnails, generated on first request and kept.
//! Metadata is in RocksDB (tables `media`, `media_by_user`, `media_by_blob`, `media_pending`,
//! `media_thumbnails`, see `store`). An upload is streamed to a temporary file while it is hashed,
//! renamed into place, and only then recorded, so a crash leaves at worst an unreferenced file,
//! never a record without its content.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use image::{DynamicImage, ImageFormat, ImageReader};
use ruma::media::Method;
use ruma::{MxcUri, OwnedMxcUri, OwnedServerName, OwnedUserId, ServerName, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, Notify};

use crate::config;
use crate::error::{Error, Result};
use crate::store::{Store, Table, key, prefix};

use super::keyed_locks::KeyedLocks;
use super::{now_ms, random_string};

/// One media ID: who made it (no one here for another server's media, cached), and its
/// content once uploaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaRecord {
    pub uploader: Option<OwnedUserId>,
    pub created_ts: u64,
    /// Absent while the ID is reserved by `/media/v1/create` and nothing is uploaded yet.
    pub content: Option<Content>,
    /// When a reservation without content lapses.
    pub expires_ts: Option<u64>,
}

/// Uploaded content: which blob, and what the uploader said it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Content {
    /// SHA-256 of the bytes, URL-safe base64: the blob's file name.
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

/// A stored thumbnail of a blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ThumbnailRecord {
    content_type: String,
}

/// A file ready to be served.
pub struct ServedFile {
    pub path: PathBuf,
    pub content_type: String,
    pub filename: Option<String>,
}

/// One media ID as listed by the admin CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaSummary {
    pub mxc: String,
    pub uploader: Option<OwnedUserId>,
    pub created_ts: u64,
    pub size: Option<u64>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

/// An upload received into a temporary file; removed on drop unless committed.
pub struct ReceivedUpload {
    temp: PathBuf,
    sha256: String,
    size: u64,
}

impl ReceivedUpload {
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for ReceivedUpload {
    fn drop(&mut self) {
        // Gone already once committed (renamed or deduplicated).
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// The thumbnail sizes the spec recommends; requests are served from the nearest one.
const THUMBNAIL_SIZES: [(u32, u32, Method); 5] = [
    (32, 32, Method::Crop),
    (96, 96, Method::Crop),
    (320, 240, Method::Scale),
    (640, 480, Method::Scale),
    (800, 600, Method::Scale),
];

/// Images larger than this in either dimension are not decoded for thumbnails.
const MAX_THUMBNAIL_SOURCE_SIDE: u32 = 12_000;

/// The longest a download waits for content that is not uploaded yet.
const MAX_DOWNLOAD_WAIT: Duration = Duration::from_secs(120);

/// Content types that animate, for which a small original may stand in for an animated thumbnail.
const ANIMATABLE_TYPES: [&str; 4] = ["image/gif", "image/webp", "image/png", "image/apng"];

/// The media repository of this server.
pub struct Media {
    store: Store,
    server_name: OwnedServerName,
    root: PathBuf,
    config: config::Media,
    sync_writes: bool,
    /// The longest an upload may pause between two pieces of its body.
    pause_limit: std::time::Duration,
    /// Held while references to blobs are added or removed, so a deletion never removes a file
    /// that an upload has just deduplicated against.
    blob_lock: Mutex<()>,
    /// One lock per thumbnail being generated, so each is generated once.
    thumbnail_locks: KeyedLocks<String>,
    /// Woken whenever content is uploaded, for downloads waiting on a reserved media ID.
    uploaded: Notify,
}

impl Media {
    pub fn new(store: Store, config: &config::Config) -> Media {
        Media {
            store,
            server_name: config.server_name.clone(),
            root: config.data_dir.join("media"),
            config: config.media.clone(),
            sync_writes: config.storage.sync_writes,
            pause_limit: config.limits.body_read_timeout,
            blob_lock: Mutex::new(()),
            thumbnail_locks: KeyedLocks::default(),
            uploaded: Notify::new(),
        }
    }

    /// Runs `work` while no media file is added or removed (for a consistent backup).
    pub async fn while_files_hold<T>(&self, work: impl AsyncFnOnce() -> T) -> T {
        let _guard = self.blob_lock.lock().await;
        work().await
    }

    /// The largest upload accepted, in bytes.
    pub fn max_upload_size(&self) -> u64 {
        self.config.max_upload_size
    }

    /// Whether the legacy unauthenticated download endpoints serve content.
    pub fn legacy_download_allowed(&self) -> bool {
        self.config.legacy_unauthenticated_download
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(&sha256[..2]).join(sha256)
    }

    fn thumbnail_dir(&self, sha256: &str) -> PathBuf {
        self.root.join("thumbnails").join(&sha256[..2]).join(sha256)
    }

    fn record_key(server_name: &ServerName, media_id: &str) -> Vec<u8> {
        key(&[server_name.as_bytes(), media_id.as_bytes()])
    }

    fn mxc(&self, media_id: &str) -> OwnedMxcUri {
        OwnedMxcUri::from(format!("mxc://{}/{media_id}", self.server_name))
    }

    /// Streams a body (a request's, or a fetched page's) into a temporary file, hashing it;
    /// 413 `M_TOO_LARGE` beyond the configured size, 408 when it pauses longer than
    /// `limits.body_read_timeout`.
    pub async fn receive<S, E>(&self, stream: S) -> Result<ReceivedUpload>
    where
        S: Stream<Item = std::result::Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let temp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&temp_dir).await?;
        let mut upload = ReceivedUpload {
            temp: temp_dir.join(random_string(24)),
            sha256: String::new(),
            size: 0,
        };
        let file = tokio::fs::File::create(&upload.temp).await?;
        let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha256::new();
        tokio::pin!(stream);
        loop {
            let next = tokio::time::timeout(self.pause_limit, stream.next())
                .await
                .map_err(|_| Error::request_timeout(format!("The upload paused for longer than {:?}", self.pause_limit)))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| Error::bad_request(format!("The upload was interrupted: {e}")))?;
            upload.size += chunk.len() as u64;
            if upload.size > self.config.max_upload_size {
                // Read (and drop) a bounded rest of the body, so a client that streams without
                // announcing the length still gets to read the 413 instead of a reset connection.
                let mut discarded = 0u64;
                while let Some(Ok(chunk)) = stream.next().await {
                    discarded += chunk.len() as u64;
                    if discarded > self.config.max_upload_size {
                        break;
                    }
                }
                return Err(too_large(self.config.max_upload_size));
            }
            hasher.update(&chunk);
            writer.write_all(&chunk).await?;
        }
        writer.flush().await?;
        if self.sync_writes {
            writer.get_ref().sync_all().await?;
        }
        upload.sha256 = URL_SAFE_NO_PAD.encode(hasher.finalize());
        Ok(upload)
    }

    /// Stores a received upload under a new media ID and returns its `mxc://` URI.
    pub async fn create(
        &self,
        upload: ReceivedUpload,
        uploader: &UserId,
        content_type: Option<String>,
        filename: Option<String>,
    ) -> Result<OwnedMxcUri> {
        let media_id = random_string(24);
        let record = MediaRecord {
            uploader: Some(uploader.to_owned()),
            created_ts: now_ms(),
            content: None,
            expires_ts: None,
        };
        self.attach(upload, &self.server_name, &media_id, record, content_type, filename)
            .await?;
        Ok(self.mxc(&media_id))
    }

    /// Stores content fetched from another server under its own `mxc://` URI (cached: it has
    /// no uploader here, and is served like local media from then on).
    pub async fn store_remote(
        &self,
        upload: ReceivedUpload,
        server_name: &ServerName,
        media_id: &str,
        content_type: Option<String>,
        filename: Option<String>,
    ) -> Result<()> {
        let record = MediaRecord {
            uploader: None,
            created_ts: now_ms(),
            content: None,
            expires_ts: None,
        };
        self.attach(upload, server_name, media_id, record, content_type, filename).await
    }

    /// Whether the content of a media ID (of any server) is stored here.
    pub fn has_content(&self, server_name: &ServerName, media_id: &str) -> Result<bool> {
        Ok(self
            .store
            .get_json::<MediaRecord>(Table::Media, &Self::record_key(server_name, media_id))?
            .is_some_and(|record| record.content.is_some()))
    }

    /// Reserves a media ID for a later upload (`/media/v1/create`): at most
    /// `max_pending_uploads` per user at a time.
    pub async fn reserve(&self, uploader: &UserId) -> Result<(OwnedMxcUri, u64)> {
        let _guard = self.blob_lock.lock().await;
        let now = now_ms();
        let pending = self.store.scan_json::<u64>(Table::MediaPending, &prefix(&[uploader.as_bytes()]))?;
        let mut batch = self.store.batch();
        let mut live = 0;
        for (row_key, expires_ts) in &pending {
            if *expires_ts <= now {
                let media_id = &row_key[uploader.as_bytes().len() + 1..];
                batch.delete(Table::MediaPending, row_key);
                batch.delete(Table::Media, &key(&[self.server_name.as_bytes(), media_id]));
            } else {
                live += 1;
            }
        }
        if live >= self.config.max_pending_uploads {
            batch.commit()?;
            return Err(Error::LimitExceeded {
                retry_after_ms: pending
                    .iter()
                    .map(|(_, ts)| ts.saturating_sub(now))
                    .filter(|ms| *ms > 0)
                    .min()
                    .unwrap_or(1000),
            });
        }
        let media_id = random_string(24);
        let expires_ts = now + self.config.pending_upload_lifetime.as_millis() as u64;
        let record = MediaRecord {
            uploader: Some(uploader.to_owned()),
            created_ts: now,
            content: None,
            expires_ts: Some(expires_ts),
        };
        batch.put_json(Table::Media, &Self::record_key(&self.server_name, &media_id), &record);
        batch.put_json(Table::MediaPending, &key(&[uploader.as_bytes(), media_id.as_bytes()]), &expires_ts);
        batch.commit()?;
        Ok((self.mxc(&media_id), expires_ts))
    }

    /// Checks that `user` may upload into the reserved media ID (before its body is read).
    pub fn check_reserved(&self, server_name: &ServerName, media_id: &str, user: &UserId) -> Result<MediaRecord> {
        let record = self.get_record(server_name, media_id)?;
        if record.uploader.as_deref() != Some(user) {
            return Err(Error::forbidden("This media ID was created by another user"));
        }
        if record.content.is_some() {
            return Err(Error::cannot_overwrite_media("This media ID already has content"));
        }
        Ok(record)
    }

    /// Uploads content into a media ID reserved by [`Media::reserve`].
    pub async fn fill_reserved(
        &self,
        upload: ReceivedUpload,
        media_id: &str,
        user: &UserId,
        content_type: Option<String>,
        filename: Option<String>,
    ) -> Result<()> {
        let record = self.check_reserved(&self.server_name, media_id, user)?;
        self.attach(upload, &self.server_name, media_id, record, content_type, filename)
            .await
    }

    /// Moves the upload into its blob (or drops it when that content is stored already) and
    /// records the media ID, in one batch.
    async fn attach(
        &self,
        upload: ReceivedUpload,
        server_name: &ServerName,
        media_id: &str,
        mut record: MediaRecord,
        content_type: Option<String>,
        filename: Option<String>,
    ) -> Result<()> {
        let _guard = self.blob_lock.lock().await;
        let record_key = Self::record_key(server_name, media_id);
        if record.expires_ts.is_some() {
            // A reservation: another upload into it may have won the race for the lock.
            match self.store.get_json::<MediaRecord>(Table::Media, &record_key)? {
                Some(current) if current.content.is_none() => {}
                Some(_) => return Err(Error::cannot_overwrite_media("This media ID already has content")),
                None => return Err(Error::not_found("This media ID has expired")),
            }
        }
        let blob = self.blob_path(&upload.sha256);
        if !tokio::fs::try_exists(&blob).await? {
            let dir = blob.parent().expect("blob paths have a parent");
            tokio::fs::create_dir_all(dir).await?;
            tokio::fs::rename(&upload.temp, &blob).await?;
            if self.sync_writes {
                tokio::fs::File::open(dir).await?.sync_all().await?;
            }
        }
        record.content = Some(Content {
            sha256: upload.sha256.clone(),
            size: upload.size,
            content_type,
            filename,
        });
        record.expires_ts = None;
        let mut batch = self.store.batch();
        batch.put_json(Table::Media, &record_key, &record);
        batch.put(Table::MediaByBlob, &by_blob_key(&upload.sha256, server_name, media_id), &[]);
        if let Some(uploader) = &record.uploader {
            batch.put(Table::MediaByUser, &by_user_key(uploader, &record, server_name, media_id), &[]);
            batch.delete(Table::MediaPending, &key(&[uploader.as_bytes(), media_id.as_bytes()]));
        }
        batch.commit()?;
        self.uploaded.notify_waiters();
        Ok(())
    }

    fn get_record(&self, server_name: &ServerName, media_id: &str) -> Result<MediaRecord> {
        let record: MediaRecord = self
            .store
            .get_json(Table::Media, &Self::record_key(server_name, media_id))?
            .ok_or_else(|| Error::not_found("Media not found"))?;
        if record.content.is_none() && record.expires_ts.is_some_and(|ts| ts <= now_ms()) {
            return Err(Error::not_found("Media not found"));
        }
        Ok(record)
    }

    /// The content of a media ID, waiting up to `timeout` for a reserved one to be uploaded
    /// (504 `M_NOT_YET_UPLOADED` after that).
    pub async fn content(&self, server_name: &ServerName, media_id: &str, timeout: Duration) -> Result<Content> {
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_DOWNLOAD_WAIT);
        loop {
            let uploaded = self.uploaded.notified();
            tokio::pin!(uploaded);
            uploaded.as_mut().enable();
            if let Some(content) = self.get_record(server_name, media_id)?.content {
                return Ok(content);
            }
            if tokio::time::timeout_at(deadline, uploaded).await.is_err() {
                return Err(Error::not_yet_uploaded("Content has not yet been uploaded"));
            }
        }
    }

    /// The width and height of an image stored on this server.
    pub fn image_dimensions(&self, uri: &MxcUri) -> Result<(u32, u32)> {
        let (server_name, media_id) = uri.parts().map_err(|e| Error::invalid_param(format!("Not an mxc URI: {e}")))?;
        let content = self
            .get_record(server_name, media_id)?
            .content
            .ok_or_else(|| Error::not_found("Media not found"))?;
        let reader = ImageReader::open(self.blob_path(&content.sha256))?.with_guessed_format()?;
        reader.into_dimensions().map_err(|_| Error::bad_request("Not an image"))
    }

    /// The original file of some content.
    pub fn original(&self, content: &Content) -> ServedFile {
        ServedFile {
            path: self.blob_path(&content.sha256),
            content_type: content.content_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
            filename: content.filename.clone(),
        }
    }

    /// A thumbnail of some content near `width`×`height`, generated on first request.
    /// With `animated`, a small enough animatable original is served as it is.
    pub async fn thumbnail(&self, content: &Content, width: u32, height: u32, method: Method, animated: bool) -> Result<ServedFile> {
        if width == 0 || height == 0 {
            return Err(Error::bad_request("Thumbnail width and height must be positive"));
        }
        let (width, height, method) = nearest_thumbnail_size(width, height, method);
        let blob = self.blob_path(&content.sha256);
        if animated
            && content
                .content_type
                .as_deref()
                .is_some_and(|t| ANIMATABLE_TYPES.contains(&media_type(t).as_str()))
        {
            let reader = ImageReader::open(&blob)?.with_guessed_format()?;
            if reader.into_dimensions().is_ok_and(|(w, h)| w <= width && h <= height) {
                return Ok(self.original(content));
            }
        }
        let name = format!("{width}x{height}-{}", method.as_str());
        let _generating = self.thumbnail_locks.lock(format!("{}/{name}", content.sha256)).await;
        self.thumbnail_file(content, &name, blob, width, height, method).await
    }

    async fn thumbnail_file(
        &self,
        content: &Content,
        name: &str,
        blob: PathBuf,
        width: u32,
        height: u32,
        method: Method,
    ) -> Result<ServedFile> {
        let path = self.thumbnail_dir(&content.sha256).join(name);
        let record_key = key(&[content.sha256.as_bytes(), name.as_bytes()]);
        if let Some(record) = self.store.get_json::<ThumbnailRecord>(Table::MediaThumbnails, &record_key)? {
            let filename = Some(format!("thumbnail.{}", extension(&content_type_format(&record.content_type))));
            return Ok(ServedFile {
                path,
                content_type: record.content_type,
                filename,
            });
        }
        let (bytes, format) = tokio::task::spawn_blocking(move || render_thumbnail(&blob, width, height, method))
            .await
            .map_err(|e| Error::Internal(format!("thumbnail task: {e}")))??;
        let dir = path.parent().expect("thumbnail paths have a parent");
        tokio::fs::create_dir_all(dir).await?;
        let temp = dir.join(format!(".{name}.tmp"));
        tokio::fs::write(&temp, &bytes).await?;
        tokio::fs::rename(&temp, &path).await?;
        let content_type = format.to_mime_type().to_owned();
        let mut batch = self.store.batch();
        batch.put_json(
            Table::MediaThumbnails,
            &record_key,
            &ThumbnailRecord {
                content_type: content_type.clone(),
            },
        );
        batch.commit()?;
        Ok(ServedFile {
            path,
            content_type,
            filename: Some(format!("thumbnail.{}", extension(&format))),
        })
    }

    /// Deletes a media ID; its file goes too when no other media ID shares the content.
    pub async fn delete(&self, server_name: &ServerName, media_id: &str) -> Result<bool> {
        let _guard = self.blob_lock.lock().await;
        let record_key = Self::record_key(server_name, media_id);
        let Some(record) = self.store.get_json::<MediaRecord>(Table::Media, &record_key)? else {
            return Ok(false);
        };
        let mut batch = self.store.batch();
        batch.delete(Table::Media, &record_key);
        if let Some(uploader) = &record.uploader {
            batch.delete(Table::MediaPending, &key(&[uploader.as_bytes(), media_id.as_bytes()]));
            batch.delete(Table::MediaByUser, &by_user_key(uploader, &record, server_name, media_id));
        }
        let Some(content) = record.content else {
            batch.commit()?;
            return Ok(true);
        };
        batch.delete(Table::MediaByBlob, &by_blob_key(&content.sha256, server_name, media_id));
        let users_of_blob = self.store.scan_keys(Table::MediaByBlob, &prefix(&[content.sha256.as_bytes()]))?;
        let last_user = users_of_blob.len() <= 1;
        if last_user {
            for (thumbnail_key, _) in self
                .store
                .scan_json::<ThumbnailRecord>(Table::MediaThumbnails, &prefix(&[content.sha256.as_bytes()]))?
            {
                batch.delete(Table::MediaThumbnails, &thumbnail_key);
            }
        }
        batch.commit()?;
        if last_user {
            remove_if_present(tokio::fs::remove_file(self.blob_path(&content.sha256)).await)?;
            remove_if_present(tokio::fs::remove_dir_all(self.thumbnail_dir(&content.sha256)).await)?;
        }
        Ok(true)
    }

    /// Every media ID a user uploaded or reserved, oldest first.
    pub fn list_by_user(&self, user: &UserId) -> Result<Vec<MediaSummary>> {
        let mut summaries = Vec::new();
        let user_prefix = prefix(&[user.as_bytes()]);
        for row_key in self.store.scan_keys(Table::MediaByUser, &user_prefix)? {
            // user ‖ created_ts (8 bytes) ‖ server ‖ media ID
            let rest = &row_key[user_prefix.len() + 9..];
            let mut parts = rest.splitn(2, |b| *b == crate::store::SEP);
            let (Some(server), Some(media_id)) = (parts.next(), parts.next()) else {
                continue;
            };
            if let Some(record) = self.store.get_json::<MediaRecord>(Table::Media, &key(&[server, media_id]))? {
                summaries.push(summary(
                    &String::from_utf8_lossy(server),
                    &String::from_utf8_lossy(media_id),
                    record,
                ));
            }
        }
        for (row_key, _) in self.store.scan_json::<u64>(Table::MediaPending, &user_prefix)? {
            let media_id = String::from_utf8_lossy(&row_key[user_prefix.len()..]).into_owned();
            if let Some(record) = self
                .store
                .get_json::<MediaRecord>(Table::Media, &Self::record_key(&self.server_name, &media_id))?
            {
                summaries.push(summary(self.server_name.as_str(), &media_id, record));
            }
        }
        summaries.sort_by_key(|s| s.created_ts);
        Ok(summaries)
    }

    /// Deletes every media ID created (or cached from another server) before `cutoff_ts`, or
    /// only the cached ones with `remote_only`; returns how many.
    pub async fn purge_created_before(&self, cutoff_ts: u64, remote_only: bool) -> Result<usize> {
        let mut purged = 0;
        for (row_key, record) in self.store.scan_json::<MediaRecord>(Table::Media, &[])? {
            if record.created_ts >= cutoff_ts || (remote_only && record.uploader.is_some()) {
                continue;
            }
            let mut parts = row_key.splitn(2, |b| *b == crate::store::SEP);
            let (Some(server), Some(media_id)) = (parts.next(), parts.next()) else {
                continue;
            };
            let server = String::from_utf8_lossy(server);
            let Ok(server_name) = ServerName::parse(server.as_ref()) else {
                continue;
            };
            if self.delete(&server_name, &String::from_utf8_lossy(media_id)).await? {
                purged += 1;
            }
        }
        Ok(purged)
    }
}

fn by_user_key(uploader: &UserId, record: &MediaRecord, server_name: &ServerName, media_id: &str) -> Vec<u8> {
    key(&[
        uploader.as_bytes(),
        &record.created_ts.to_be_bytes(),
        server_name.as_bytes(),
        media_id.as_bytes(),
    ])
}

fn by_blob_key(sha256: &str, server_name: &ServerName, media_id: &str) -> Vec<u8> {
    key(&[sha256.as_bytes(), server_name.as_bytes(), media_id.as_bytes()])
}

fn summary(server: &str, media_id: &str, record: MediaRecord) -> MediaSummary {
    MediaSummary {
        mxc: format!("mxc://{server}/{media_id}"),
        uploader: record.uploader,
        created_ts: record.created_ts,
        size: record.content.as_ref().map(|c| c.size),
        content_type: record.content.as_ref().and_then(|c| c.content_type.clone()),
        filename: record.content.and_then(|c| c.filename),
    }
}

fn remove_if_present(result: std::io::Result<()>) -> Result<()> {
    match result {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}

fn too_large(limit: u64) -> Error {
    Error::too_large(format!("The upload is larger than this server's limit of {limit} bytes"))
}

/// The media type of a `Content-Type` value, without parameters, lowercased.
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The recommended size to serve for a requested one: the smallest of the same method that
/// covers it, else the smallest of any method that does, else the largest.
fn nearest_thumbnail_size(width: u32, height: u32, method: Method) -> (u32, u32, Method) {
    let covers = |&&(w, h, _): &&(u32, u32, Method)| w >= width && h >= height;
    THUMBNAIL_SIZES
        .iter()
        .filter(|(_, _, m)| *m == method)
        .find(covers)
        .or_else(|| THUMBNAIL_SIZES.iter().find(covers))
        .unwrap_or(&THUMBNAIL_SIZES[THUMBNAIL_SIZES.len() - 1])
        .clone()
}

/// Decodes an image (its first frame, for animations) and renders a static thumbnail: JPEG for
/// JPEG sources, PNG for everything else. Never enlarges.
fn render_thumbnail(blob: &Path, width: u32, height: u32, method: Method) -> Result<(Vec<u8>, ImageFormat)> {
    let cannot = || Error::bad_request("Cannot generate thumbnails for the requested content");
    let mut reader = ImageReader::open(blob)?.with_guessed_format()?;
    let source_format = reader.format().ok_or_else(cannot)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_THUMBNAIL_SOURCE_SIDE);
    limits.max_image_height = Some(MAX_THUMBNAIL_SOURCE_SIDE);
    reader.limits(limits);
    let image = reader.decode().map_err(|error| match error {
        image::ImageError::Limits(_) => Error::too_large("Content is too large to thumbnail"),
        _ => cannot(),
    })?;
    let thumbnail = if image.width() <= width && image.height() <= height {
        image
    } else {
        match method {
            Method::Crop => image.resize_to_fill(width, height, image::imageops::FilterType::Triangle),
            _ => image.resize(width, height, image::imageops::FilterType::Triangle),
        }
    };
    let format = if source_format == ImageFormat::Jpeg {
        ImageFormat::Jpeg
    } else {
        ImageFormat::Png
    };
    let mut bytes = Cursor::new(Vec::new());
    let encoded = match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(thumbnail.to_rgb8()).write_to(&mut bytes, format),
        _ => thumbnail.write_to(&mut bytes, format),
    };
    encoded.map_err(|e| Error::Internal(format!("thumbnail encoding: {e}")))?;
    Ok((bytes.into_inner(), format))
}

fn content_type_format(content_type: &str) -> ImageFormat {
    ImageFormat::from_mime_type(content_type).unwrap_or(ImageFormat::Png)
}

fn extension(format: &ImageFormat) -> &'static str {
    format.extensions_str().first().copied().unwrap_or("png")
}
