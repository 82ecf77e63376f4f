//! The media workload: upload and download throughput of large files, and the time to make
//! thumbnails of a large image, first and already made.

use std::time::{Duration, Instant};

use rand::RngCore;

use super::{BenchResult, Figure, Session, millis};

/// Megabytes (MiB) per second.
pub fn mib_per_second(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

/// Uploads and downloads `rounds` files of `size_mib` MiB, then thumbnails an `image_side`
/// square PNG.
pub async fn media(session: &Session, size_mib: usize, rounds: usize, image_side: u32) -> BenchResult<Vec<Figure>> {
    let mut file = vec![0u8; size_mib * 1024 * 1024];
    let mut figures = Vec::new();

    // Distinct random content each round, so no upload is deduplicated against another.
    let mut uploaded = Vec::new();
    let mut upload_time = Duration::ZERO;
    for _ in 0..rounds {
        rand::thread_rng().fill_bytes(&mut file);
        let started = Instant::now();
        uploaded.push(session.upload("application/octet-stream", file.clone()).await?);
        upload_time += started.elapsed();
    }
    figures.push(Figure {
        name: format!("upload {size_mib} MiB (mean of {rounds})"),
        value: mib_per_second(file.len() * rounds, upload_time),
        unit: "MiB/s",
    });

    let started = Instant::now();
    let mut downloaded = 0;
    for media in &uploaded {
        downloaded += session.get_bytes(&format!("/_matrix/client/v1/media/download/{media}")).await?;
    }
    figures.push(Figure {
        name: format!("download {size_mib} MiB (mean of {rounds})"),
        value: mib_per_second(downloaded, started.elapsed()),
        unit: "MiB/s",
    });

    // Thumbnails of a photo-like PNG: the first request of each size generates it.
    let image = image::RgbImage::from_fn(image_side, image_side, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png).map_err(|e| e.to_string())?;
    let media = session.upload("image/png", png.into_inner()).await?;
    for (width, height, method) in [(96, 96, "crop"), (320, 240, "scale"), (800, 600, "scale")] {
        let path = format!("/_matrix/client/v1/media/thumbnail/{media}?width={width}&height={height}&method={method}");
        let started = Instant::now();
        session.get_bytes(&path).await?;
        figures.push(Figure {
            name: format!("thumbnail {width}x{height} {method} of {image_side}x{image_side} PNG, first"),
            value: millis(started.elapsed()),
            unit: "ms",
        });
        let started = Instant::now();
        for _ in 0..rounds {
            session.get_bytes(&path).await?;
        }
        figures.push(Figure {
            name: format!("thumbnail {width}x{height} {method}, cached (mean of {rounds})"),
            value: millis(started.elapsed()) / rounds as f64,
            unit: "ms",
        });
    }
    Ok(figures)
}
