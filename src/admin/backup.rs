//! Backups: `hearth admin backup <dir>` writes a consistent RocksDB checkpoint and the media
//! files while the server runs (`--keep N` keeps a rotating set of dated backups in `<dir>`);
//! `hearth admin restore <dir>` (server stopped) puts one back into an empty data directory.

use std::path::Path;

use crate::error::{Error, Result};
use crate::service::Services;

/// Copies a directory tree (regular files and directories).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut copied = 0;
    if !from.exists() {
        return Ok(0);
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copied += copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Writes a backup of the running server into `dir`, which must not exist yet.
pub async fn backup(services: &Services, dir: &Path) -> Result<String> {
    if !services.store.is_embedded() {
        return Err(Error::bad_request(
            "the store is in PostgreSQL: back it up with PostgreSQL's tools (pg_dump, or the cluster's base backups \
             and WAL archive), and copy the media directory beside it",
        ));
    }
    if dir.exists() {
        return Err(Error::bad_request(format!(
            "{} exists already: back up into a new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)?;
    let media_files = services
        .media
        .while_files_hold(async || -> Result<u64> {
            services.store.checkpoint(&dir.join("db"))?;
            let media = services.config.data_dir.join("media");
            let mut copied = copy_tree(&media.join("blobs"), &dir.join("media").join("blobs"))?;
            copied += copy_tree(&media.join("thumbnails"), &dir.join("media").join("thumbnails"))?;
            Ok(copied)
        })
        .await?;
    Ok(format!(
        "backed up the database and {media_files} media file(s) into {}",
        dir.display()
    ))
}

/// What dated backups are named: `hearth-` and their UTC time, so names sort by age.
const DATED_PREFIX: &str = "hearth-";

/// Writes a backup into `parent/hearth-<UTC time>`, then removes all but the newest `keep`
/// dated backups in `parent`.
pub async fn backup_rotated(services: &Services, parent: &Path, keep: u32) -> Result<String> {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    let done = backup(services, &parent.join(format!("{DATED_PREFIX}{now}"))).await?;
    let mut dated: Vec<_> = std::fs::read_dir(parent)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(DATED_PREFIX) && entry.path().is_dir())
        .map(|entry| entry.path())
        .collect();
    dated.sort();
    let surplus = dated.len().saturating_sub(keep as usize);
    for old in &dated[..surplus] {
        std::fs::remove_dir_all(old)?;
    }
    Ok(format!("{done}; removed {surplus} older backup(s), keeping {keep}"))
}

/// Restores a backup into the data directory of a stopped server, which must hold no database.
pub fn restore(data_dir: &Path, dir: &Path) -> std::result::Result<String, String> {
    if !dir.join("db").is_dir() {
        return Err(format!("{} holds no backup (no db/ inside)", dir.display()));
    }
    if data_dir.join("db").exists() {
        return Err(format!(
            "{} already holds a database: move it away before restoring",
            data_dir.join("db").display()
        ));
    }
    let files = copy_tree(&dir.join("db"), &data_dir.join("db")).map_err(|e| e.to_string())?;
    let media = copy_tree(&dir.join("media"), &data_dir.join("media")).map_err(|e| e.to_string())?;
    Ok(format!(
        "restored {files} database file(s) and {media} media file(s) into {}",
        data_dir.display()
    ))
}
