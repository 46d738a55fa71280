//! Downloading one blob over an edge uplink: the body is read only up to the size its
//! descriptor declares (an endless body cannot fill the disk), verified against its digest,
//! and kept as `images/tmp/partial-<digest>` when the transfer breaks, so the next try asks
//! for the rest with a `Range` request (and starts over when the registry ignores it, as the
//! distribution spec allows). An exclusive `flock` on the partial file keeps two pulls of one
//! blob (the agent's and a `staticlet images pull`) from writing it at once.

use super::lock::Lease;
use super::registry::{err, Client};
use super::store::digest_hex;
use super::{ImageError, ImageStore};
use rustix::fs::{flock, FlockOperation};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

fn io_at(path: &Path) -> impl Fn(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Hashes what is already in the partial file (a resumed download).
fn hash_prefix(file: &mut File, len: u64, path: &Path) -> Result<Sha256, ImageError> {
    let mut hasher = Sha256::new();
    file.seek(SeekFrom::Start(0)).map_err(io_at(path))?;
    let mut reader = (&mut *file).take(len);
    io::copy(&mut reader, &mut hasher).map_err(io_at(path))?;
    Ok(hasher)
}

/// Fetches blob `digest` of `size` bytes into the store, unless it is there already.
pub(super) fn fetch_blob(
    client: &mut Client,
    store: &ImageStore,
    _lease: &Lease,
    digest: &str,
    size: u64,
) -> Result<(), ImageError> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let partial: PathBuf = store
        .dir()
        .join("tmp")
        .join(format!("partial-{}", digest_hex(digest)?));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&partial)
        .map_err(io_at(&partial))?;
    flock(&file, FlockOperation::LockExclusive).map_err(|e| io_at(&partial)(e.into()))?;
    if store.has_blob(digest) {
        return Ok(()); // another pull finished it while we waited
    }
    let mut have = file.metadata().map_err(io_at(&partial))?.len();
    if have > size {
        file.set_len(0).map_err(io_at(&partial))?;
        have = 0;
    }
    let mut hasher = hash_prefix(&mut file, have, &partial)?;
    let origin = format!("{}/{}@{digest}", client.registry, client.repo);
    if have < size {
        let url = format!("{}/blobs/{digest}", client.base);
        let range = format!("bytes={have}-");
        let headers: &[(&str, &str)] = if have > 0 { &[("Range", &range)] } else { &[] };
        let mut resp = client.get(&url, headers, None)?;
        let status = resp.status().as_u16();
        let resumed = status == 206
            && resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {have}-")));
        match status {
            206 if resumed => {
                log::info!("blob {digest}: resuming at {have} of {size} bytes");
            }
            200 => {
                // A full body: the registry does not do ranges (or nothing was kept).
                file.set_len(0).map_err(io_at(&partial))?;
                have = 0;
                hasher = Sha256::new();
            }
            _ => {
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                if status == 206 || status == 416 {
                    // A range we did not ask for: start over at the next try.
                    file.set_len(0).map_err(io_at(&partial))?;
                }
                return Err(err(
                    &client.registry,
                    format!("blob {digest}: {status} {}", body.trim()),
                ));
            }
        }
        file.seek(SeekFrom::Start(have)).map_err(io_at(&partial))?;
        let mut body = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .reader()
            .take(size - have);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = file.sync_data();
                    return Err(err(
                        &client.registry,
                        format!("blob {digest}: download interrupted after {have} of {size} bytes ({e}); the next try resumes there"),
                    ));
                }
            };
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
                break;
            };
            hasher.update(chunk);
            file.write_all(chunk).map_err(io_at(&partial))?;
            have += n as u64;
        }
        if have < size {
            let _ = file.sync_data();
            return Err(err(
                &client.registry,
                format!("blob {digest}: the body ended after {have} of {size} bytes; the next try resumes there"),
            ));
        }
    }
    let actual = format!("sha256:{}", super::extract::hex(&hasher.finalize()));
    if actual != digest {
        let _ = fs::remove_file(&partial);
        return Err(ImageError::Corrupt {
            origin,
            expected: digest.into(),
            actual,
        });
    }
    file.sync_all().map_err(io_at(&partial))?;
    let dest = store.blob_path(digest)?;
    fs::rename(&partial, &dest).map_err(io_at(&dest))?;
    log::debug!("stored blob {digest} ({size} bytes) from {origin}");
    Ok(())
}
