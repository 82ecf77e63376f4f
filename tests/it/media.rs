//! The media repository: uploads with `matrix-sdk` and plain HTTP, downloads through the
//! authenticated and the legacy API, thumbnails, safe-serving headers, limits, persistence and
//! the admin CLI.

use std::io::Cursor;

use image::{ImageFormat, RgbaImage};
use matrix_sdk::Client;
use matrix_sdk::media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings};
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::media::Method as ThumbnailMethod;
use matrix_sdk::ruma::uint;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{TestServer, assert_error};

/// A `width`×`height` PNG with a gradient, so its bytes are not trivially compressible.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8, 255])
    });
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// The `/_matrix/client/v1/media/…` and `/_matrix/media/v3/…` path of an mxc URI.
fn media_path(api: &str, kind: &str, mxc: &str) -> String {
    let rest = mxc.strip_prefix("mxc://").unwrap();
    match api {
        "v1" => format!("/_matrix/client/v1/media/{kind}/{rest}"),
        _ => format!("/_matrix/media/v3/{kind}/{rest}"),
    }
}

/// GETs a path; returns the status, headers and body bytes.
pub async fn fetch(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = server.http.get(format!("{}{path}", server.base_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(range) = range {
        request = request.header(reqwest::header::RANGE, range);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// Uploads raw bytes with `POST /_matrix/media/v3/upload`.
pub async fn upload(server: &TestServer, token: &str, content_type: &str, filename: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let response = server
        .http
        .post(format!("{}/_matrix/media/v3/upload?filename={filename}", server.base_url))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

pub fn decoded_size(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).expect("the thumbnail decodes as an image");
    (image.width(), image.height())
}

#[tokio::test]
async fn upload_avatar_download_and_thumbnails_with_matrix_sdk() {
    let server = TestServer::start(&[("HEARTH_MEDIA__LEGACY_UNAUTHENTICATED_DOWNLOAD", "true")]).await;
    let client = Client::builder().homeserver_url(&server.base_url).build().await.unwrap();
    server.register("alice", "wonderland").await;
    client.matrix_auth().login_username("alice", "wonderland").send().await.unwrap();
    let token = client.access_token().unwrap();

    // Upload a PNG and make it the avatar.
    let picture = png(640, 480);
    let uploaded = client
        .media()
        .upload(&mime::IMAGE_PNG, picture.clone(), None)
        .await
        .expect("upload succeeds");
    let mxc = uploaded.content_uri.to_string();
    assert!(mxc.starts_with("mxc://localhost/"), "{mxc}");
    client.account().set_avatar_url(Some(&uploaded.content_uri)).await.unwrap();
    assert_eq!(client.account().get_avatar_url().await.unwrap(), Some(uploaded.content_uri.clone()));

    // The SDK downloads identical bytes (authenticated media) and a thumbnail of the requested size.
    let source = MediaSource::Plain(uploaded.content_uri.clone());
    let file = MediaRequestParameters {
        source: source.clone(),
        format: MediaFormat::File,
    };
    assert_eq!(client.media().get_media_content(&file, false).await.unwrap(), picture);
    let crop = MediaRequestParameters {
        source,
        format: MediaFormat::Thumbnail(MediaThumbnailSettings::with_method(ThumbnailMethod::Crop, uint!(96), uint!(96))),
    };
    let thumbnail = client.media().get_media_content(&crop, false).await.unwrap();
    assert_eq!(decoded_size(&thumbnail), (96, 96));

    // Plain HTTP: both APIs serve the same bytes with the safe-serving headers.
    let (status, headers, body) = fetch(&server, &media_path("v1", "download", &mxc), Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, picture);
    assert_eq!(header(&headers, "content-type"), "image/png");
    assert!(header(&headers, "content-disposition").starts_with("inline"), "{headers:?}");
    assert!(header(&headers, "content-security-policy").starts_with("sandbox"), "{headers:?}");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    let (status, _, body) = fetch(&server, &media_path("v3", "download", &mxc), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, picture);
    let named = format!("{}/avatar.png", media_path("v1", "download", &mxc));
    let (status, headers, body) = fetch(&server, &named, Some(&token), None).await;
    assert_eq!((status, body == picture), (StatusCode::OK, true));
    assert!(header(&headers, "content-disposition").contains("avatar.png"), "{headers:?}");

    // A range request gets just those bytes.
    let (status, headers, body) = fetch(&server, &media_path("v1", "download", &mxc), Some(&token), Some("bytes=10-19")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, picture[10..20]);
    assert_eq!(header(&headers, "content-range"), format!("bytes 10-19/{}", picture.len()));

    // Scaled thumbnails keep the aspect ratio, on both APIs; a second request is served the same.
    for api in ["v1", "v3"] {
        let path = format!("{}?width=320&height=240&method=scale", media_path(api, "thumbnail", &mxc));
        for _ in 0..2 {
            let (status, headers, body) = fetch(&server, &path, Some(&token), None).await;
            assert_eq!(status, StatusCode::OK, "{api}");
            assert_eq!(header(&headers, "content-type"), "image/png");
            assert!(header(&headers, "content-disposition").starts_with("inline"));
            assert_eq!(decoded_size(&body), (320, 240));
        }
    }
    // An animated request for a small image serves the image itself.
    let small = png(20, 20);
    let (_, body) = upload(&server, &token, "image/png", "small.png", small.clone()).await;
    let small_mxc = body["content_uri"].as_str().unwrap().to_owned();
    let path = format!(
        "{}?width=32&height=32&method=crop&animated=true",
        media_path("v1", "thumbnail", &small_mxc)
    );
    let (status, _, body) = fetch(&server, &path, Some(&token), None).await;
    assert_eq!((status, body), (StatusCode::OK, small));
}

#[tokio::test]
async fn media_errors_and_unsafe_content() {
    let server = TestServer::start(&[
        ("HEARTH_MEDIA__MAX_UPLOAD_SIZE", "100000"),
        ("HEARTH_MEDIA__UPLOAD_RATE__BURST", "5"),
        ("HEARTH_MEDIA__UPLOAD_RATE__PER_SECOND", "0.01"),
    ])
    .await;
    let (token, _) = server.register("bob", "builder12").await;

    let (status, body) = server.get("/_matrix/client/v1/media/config", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["m.upload.size"], 100000);

    // Too large: 413 M_TOO_LARGE, whether the length is announced or not.
    assert_error(
        &upload(&server, &token, "application/octet-stream", "big.bin", vec![7; 100_001]).await,
        413,
        "M_TOO_LARGE",
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![1u8; 10_000])).collect();
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", server.base_url))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let answer = (response.status(), response.json().await.unwrap());
    assert_error(&answer, 413, "M_TOO_LARGE");

    // HTML is served as an attachment, never inline.
    let (status, body) = upload(&server, &token, "text/html", "page.html", b"<script>alert(1)</script>".to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let html = body["content_uri"].as_str().unwrap().to_owned();
    let (status, headers, _) = fetch(&server, &media_path("v1", "download", &html), Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "text/html");
    assert!(header(&headers, "content-disposition").starts_with("attachment"), "{headers:?}");

    // Not an image: no thumbnail, a clean 400.
    let path = format!("{}?width=96&height=96", media_path("v1", "thumbnail", &html));
    assert_error(&server.get(&path, Some(&token)).await, 400, "M_UNKNOWN");

    // The authenticated API wants a token; unknown media is 404; the legacy download is off.
    assert_error(
        &server.get(&media_path("v1", "download", &html), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server
            .get("/_matrix/client/v1/media/download/localhost/NoSuchMedia", Some(&token))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get(
                "/_matrix/client/v1/media/thumbnail/localhost/NoSuchMedia?width=32&height=32",
                Some(&token),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(&server.get(&media_path("v3", "download", &html), None).await, 404, "M_NOT_FOUND");
    let path = format!("{}?width=0&height=96", media_path("v1", "thumbnail", &html));
    assert_error(&server.get(&path, Some(&token)).await, 400, "M_UNKNOWN");

    // Uploads are rate-limited per user. Two counted so far (the upload refused for its announced
    // length was not read, nor counted); three more fit the burst of five.
    for _ in 0..3 {
        assert_eq!(
            upload(&server, &token, "text/plain", "a.txt", b"hello".to_vec()).await.0,
            StatusCode::OK
        );
    }
    let limited = upload(&server, &token, "text/plain", "a.txt", b"hello".to_vec()).await;
    assert_error(&limited, 429, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().unwrap() > 0);
    let (other, _) = server.register("other", "otherpass").await;
    assert_eq!(
        upload(&server, &other, "text/plain", "a.txt", b"hello".to_vec()).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn async_upload_waits_survives_crash_and_admin_cli() {
    let server = TestServer::start(&[]).await;
    let client = Client::builder().homeserver_url(&server.base_url).build().await.unwrap();
    server.register("carol", "carolpass").await;
    client.matrix_auth().login_username("carol", "carolpass").send().await.unwrap();
    let token = client.access_token().unwrap();
    let (mallory, _) = server.register("mallory", "mallorypass").await;

    // Reserve an ID; a download waiting on it returns once the content arrives.
    let reserved = client.media().create_content_uri().await.unwrap();
    let mxc = reserved.uri.to_string();
    let path = media_path("v1", "download", &mxc);
    assert_error(
        &server.get(&format!("{path}?timeout_ms=100"), Some(&token)).await,
        504,
        "M_NOT_YET_UPLOADED",
    );
    let waiting = {
        let (base, token) = (server.base_url.clone(), token.clone());
        let path = path.clone();
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (response.status(), response.bytes().await.unwrap().to_vec())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // Only the creator may upload into it.
    let upload_path = format!("/_matrix/media/v3/upload/{}", mxc.strip_prefix("mxc://").unwrap());
    assert_error(
        &server.request_raw(Method::PUT, &upload_path, Some(&mallory), "x").await,
        403,
        "M_FORBIDDEN",
    );
    let picture = png(64, 48);
    client
        .media()
        .upload_preallocated(reserved, &mime::IMAGE_PNG, picture.clone())
        .await
        .unwrap();
    let (status, body) = waiting.await.unwrap();
    assert_eq!((status, body == picture), (StatusCode::OK, true));
    assert_error(
        &server.request_raw(Method::PUT, &upload_path, Some(&token), "again").await,
        409,
        "M_CANNOT_OVERWRITE_MEDIA",
    );

    // The same bytes uploaded twice are two media IDs on one file.
    let (_, body) = upload(&server, &token, "image/png", "copy.png", picture.clone()).await;
    let copy = body["content_uri"].as_str().unwrap().to_owned();
    assert_ne!(copy, mxc);

    // SIGKILL and restart: the uploads are still there.
    let mut server = server;
    server.crash_and_restart().await;
    let (status, _, body) = fetch(&server, &path, Some(&token), None).await;
    assert_eq!((status, body == picture), (StatusCode::OK, true));

    // The admin CLI lists, deletes and purges while the server runs.
    let (output, listed) = server.admin(&["media", "list", "--user", "carol"]);
    assert!(output.status.success(), "{output:?}");
    let listed: Vec<String> = listed["media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mxc"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, vec![mxc.clone(), copy.clone()]);
    let (output, _) = server.admin(&["media", "delete", &mxc]);
    assert!(output.status.success(), "{output:?}");
    assert_error(&server.get(&path, Some(&token)).await, 404, "M_NOT_FOUND");
    // The copy shares the file and is untouched.
    let (status, _, body) = fetch(&server, &media_path("v1", "download", &copy), Some(&token), None).await;
    assert_eq!((status, body == picture), (StatusCode::OK, true));
    let (output, _) = server.admin(&["media", "delete", &mxc]);
    assert_eq!(output.status.code(), Some(1));
    let (output, _) = server.admin(&["media", "purge", "--older-than", "1h"]);
    assert!(output.status.success());
    let (status, _, _) = fetch(&server, &media_path("v1", "download", &copy), Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (output, purged) = server.admin(&["media", "purge", "--older-than", "0s"]);
    assert!(output.status.success());
    assert_eq!(purged["done"], "purged 1 media item(s)");
    let (status, _, _) = fetch(&server, &media_path("v1", "download", &copy), Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let blobs = server.dir.path().join("data/media/blobs");
    let files = walk(&blobs);
    assert!(files.is_empty(), "no file is left once no media uses it: {files:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

/// A web server on loopback with a page that has OpenGraph data and an image.
async fn start_website(image: Vec<u8>) -> String {
    use axum::response::{Html, Redirect};
    use axum::routing::get;
    let page = r#"<html><head><title>Fallback title</title>
        <meta name="description" content="A place to chat">
        <meta property="og:title" content="Hearth home">
        <meta property="og:image" content="/logo.png">
        </head><body>Hello</body></html>"#;
    let app = axum::Router::new()
        .route("/page", get(move || async move { Html(page) }))
        .route(
            "/plain",
            get(|| async { Html("<html><head><title> Just a title </title></head></html>") }),
        )
        .route("/moved", get(|| async { Redirect::temporary("/page") }))
        .route(
            "/logo.png",
            get(move || async move { ([(reqwest::header::CONTENT_TYPE, "image/png")], image) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn preview_path(url: &str) -> String {
    format!(
        "/_matrix/client/v1/media/preview_url?url={}",
        url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
    )
}

#[tokio::test]
async fn url_previews_when_enabled_and_guarded() {
    let site = start_website(png(120, 60)).await;

    // Off by default.
    let server = TestServer::start(&[]).await;
    let (token, _) = server.register("dave", "davepass1").await;
    assert_error(
        &server.get(&preview_path(&format!("{site}/page")), Some(&token)).await,
        404,
        "M_UNRECOGNIZED",
    );
    drop(server);

    // On, with loopback blocked as by default: neither the literal address nor a name for it.
    let server = TestServer::start(&[("HEARTH_MEDIA__URL_PREVIEW__ENABLED", "true")]).await;
    let (token, _) = server.register("dave", "davepass1").await;
    assert_error(
        &server.get(&preview_path(&format!("{site}/page")), Some(&token)).await,
        403,
        "M_FORBIDDEN",
    );
    let by_name = site.replace("127.0.0.1", "localhost");
    let (status, body) = server.get(&preview_path(&format!("{by_name}/page")), Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_error(
        &server.get(&preview_path("file:///etc/passwd"), Some(&token)).await,
        400,
        "M_INVALID_PARAM",
    );
    drop(server);

    // On, with loopback allowed: OpenGraph data, the image stored as media, redirects followed.
    let server = TestServer::start(&[
        ("HEARTH_MEDIA__URL_PREVIEW__ENABLED", "true"),
        ("HEARTH_MEDIA__URL_PREVIEW__ALLOWED_NETWORKS", "[\"127.0.0.1/32\"]"),
    ])
    .await;
    let (token, _) = server.register("dave", "davepass1").await;
    let (status, preview) = server.get(&preview_path(&format!("{site}/moved")), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["og:title"], "Hearth home");
    assert_eq!(preview["og:description"], "A place to chat");
    assert_eq!(
        (preview["og:image:width"].as_u64(), preview["og:image:height"].as_u64()),
        (Some(120), Some(60))
    );
    let image = preview["og:image"].as_str().unwrap();
    let (status, _, bytes) = fetch(&server, &media_path("v1", "download", image), Some(&token), None).await;
    assert_eq!((status, bytes == png(120, 60)), (StatusCode::OK, true));
    assert_eq!(preview["matrix:image:size"].as_u64(), Some(png(120, 60).len() as u64));
    let (_, plain) = server.get(&preview_path(&format!("{site}/plain")), Some(&token)).await;
    assert_eq!(plain, serde_json::json!({ "og:title": "Just a title" }));
    let (status, image_preview) = server.get(&preview_path(&format!("{site}/logo.png")), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(image_preview["og:image:type"], "image/png");
}
