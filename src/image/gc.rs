//! Removing references and collecting what no reference needs any more: blobs, unpacked
//! rootfs directories (never one a container still uses: an overlay over it is listed in
//! `/proc/self/mounts`; it is kept and collected at a later run), and the leftovers of
//! interrupted imports and pulls.
//!
//! Collection runs under the store lock and only when no import or pull holds a lease
//! ([`super::lock`]); otherwise it is deferred to the end of that operation, which runs it.

use super::store::{digest_hex, ImageRecord};
use super::{ImageError, ImageStore, Reference};
use crate::sys::fsutil;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Partial downloads are kept for a resume this long after their last write.
const PARTIAL_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a collection did.
#[derive(Debug, Default, PartialEq)]
pub enum Collected {
    /// An import or pull is in progress; it collects when it ends.
    #[default]
    Deferred,
    Done {
        blobs: usize,
        rootfs: usize,
        in_use: usize,
    },
}

fn remove_path(path: &Path) {
    let _ = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
}

impl ImageStore {
    /// Removes a reference; the image's blobs and rootfs go when no reference is left and no
    /// container uses the rootfs.
    pub fn remove(&self, reference: &Reference) -> Result<(String, Collected), ImageError> {
        let _lock = self.lock()?;
        let mut refs = self.refs()?;
        let Some(image) = self.resolve(reference)? else {
            return Err(ImageError::NotFound(reference.to_string()));
        };
        let still_used = refs
            .iter()
            .any(|(r, rec)| r != &image.reference && rec.manifest == image.record.manifest);
        if !still_used && fsutil::mounts_mentioning(&self.rootfs_path(&image.record.manifest)?) {
            return Err(ImageError::InUse(image.reference));
        }
        refs.remove(&image.reference);
        self.write_refs(&refs)?;
        let collected = self.collect_locked(&refs)?;
        Ok((image.reference, collected))
    }

    /// Collects garbage now if no import or pull is in progress.
    pub fn collect_garbage(&self) -> Result<Collected, ImageError> {
        if !self.dir.join("refs.json").exists() && !self.dir.join("tmp").exists() {
            return Ok(Collected::Done {
                blobs: 0,
                rootfs: 0,
                in_use: 0,
            });
        }
        let _lock = self.lock()?;
        let refs = self.refs()?;
        self.collect_locked(&refs)
    }

    fn collect_locked(
        &self,
        refs: &BTreeMap<String, ImageRecord>,
    ) -> Result<Collected, ImageError> {
        let Some(_idle) = self.idle()? else {
            log::debug!("image store: collection deferred, an import or pull is in progress");
            return Ok(Collected::Deferred);
        };
        let mut keep = HashSet::new();
        let mut rootfs_keep = HashSet::new();
        for rec in refs.values() {
            keep.insert(rec.manifest.clone());
            keep.insert(rec.config.clone());
            if let Ok(h) = digest_hex(&rec.manifest) {
                rootfs_keep.insert(h.to_string());
            }
            match self.manifest(&rec.manifest) {
                Ok(m) => keep.extend(m.layers().iter().map(|l| l.digest().to_string())),
                // A reference whose manifest cannot be read: keep every blob rather than
                // guess which ones it needs.
                Err(_) => return Ok(Collected::Deferred),
            }
        }
        let (mut blobs, mut rootfs, mut in_use) = (0, 0, 0);
        let read = |dir: &Path| -> Result<Vec<fs::DirEntry>, ImageError> {
            match fs::read_dir(dir) {
                Ok(it) => Ok(it.flatten().collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(source) => Err(ImageError::Io {
                    path: dir.to_path_buf(),
                    source,
                }),
            }
        };
        for e in read(&self.dir.join("rootfs"))? {
            let hex = e.file_name().to_string_lossy().to_string();
            if rootfs_keep.contains(&hex) {
                continue;
            }
            if fsutil::mounts_mentioning(&e.path()) {
                in_use += 1;
                continue;
            }
            remove_path(&e.path());
            rootfs += 1;
        }
        for e in read(&self.dir.join("blobs/sha256"))? {
            let digest = format!("sha256:{}", e.file_name().to_string_lossy());
            if !keep.contains(&digest) {
                remove_path(&e.path());
                blobs += 1;
            }
        }
        // No lease is held: every temporary file is a leftover, except the partial
        // downloads kept for a resume (until they are a week old).
        let now = SystemTime::now();
        for e in read(&self.dir.join("tmp"))? {
            let name = e.file_name().to_string_lossy().to_string();
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age < PARTIAL_MAX_AGE);
            if name.starts_with("partial-") && fresh {
                continue;
            }
            remove_path(&e.path());
        }
        if blobs + rootfs > 0 {
            log::info!("image store: removed {blobs} unused blobs and {rootfs} unused rootfs");
        }
        Ok(Collected::Done {
            blobs,
            rootfs,
            in_use,
        })
    }
}
