//! Unpacking an image into its read-only rootfs, and recording a reference only once that
//! worked, both under the store lock: two pods (or an import and a pod) needing the same
//! image unpack it once, into a temporary directory of their own that is renamed into place
//! only when complete.

use super::extract;
use super::lock::Lease;
use super::store::{digest_hex, ImageRecord};
use super::{Image, ImageError, ImageStore, Reference};
use oci_spec::image::{ImageConfiguration, ImageManifest};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

impl ImageStore {
    pub(super) fn rootfs_path(&self, manifest_digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join("rootfs").join(digest_hex(manifest_digest)?))
    }

    /// Whether the image's rootfs is unpacked already (using it costs no unpacking).
    pub fn is_unpacked(&self, image: &Image) -> bool {
        self.rootfs_path(&image.record.manifest)
            .is_ok_and(|p| p.is_dir())
    }

    /// The image's unpacked, read-only rootfs; unpacked on first use.
    pub fn rootfs(&self, image: &Image) -> Result<PathBuf, ImageError> {
        let dest = self.rootfs_path(&image.record.manifest)?;
        if dest.is_dir() {
            return Ok(dest);
        }
        let _lease = self.lease()?;
        let _lock = self.lock()?;
        self.unpack_locked(
            &image.reference,
            &image.record.manifest,
            &image.manifest,
            &image.config,
        )
    }

    /// Unpacks (if not done yet) and records `reference` for the stored image whose manifest
    /// is `manifest_digest`. The reference it replaces, if any, is returned: its image may now
    /// be garbage.
    pub fn commit(
        &self,
        _lease: &Lease,
        reference: &Reference,
        manifest_digest: &str,
        now: &str,
    ) -> Result<Option<ImageRecord>, ImageError> {
        let name = reference.to_string();
        let (manifest, config) = self.load_image(&name, manifest_digest)?;
        let _lock = self.lock()?;
        self.unpack_locked(&name, manifest_digest, &manifest, &config)?;
        let size = manifest
            .layers()
            .iter()
            .fold(manifest.config().size(), |a, l| a.saturating_add(l.size()));
        let mut refs = self.refs()?;
        let old = refs.insert(
            name,
            ImageRecord {
                manifest: manifest_digest.into(),
                config: manifest.config().digest().to_string(),
                size,
                imported: now.into(),
            },
        );
        self.write_refs(&refs)?;
        Ok(old.filter(|o| o.manifest != manifest_digest))
    }

    /// Unpacks into a private temporary directory and renames it into place; the caller
    /// holds the store lock, so nobody else is unpacking the same image.
    fn unpack_locked(
        &self,
        name: &str,
        manifest_digest: &str,
        manifest: &ImageManifest,
        config: &ImageConfiguration,
    ) -> Result<PathBuf, ImageError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dest = self.rootfs_path(manifest_digest)?;
        if dest.is_dir() {
            return Ok(dest);
        }
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::Format {
                origin: format!("image {name}"),
                message: format!(
                    "its manifest has {} layers but its config lists {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        let tmp = self.dir.join("tmp").join(format!(
            "rootfs-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            digest_hex(manifest_digest)?
        ));
        fs::create_dir_all(&tmp).map_err(|source| ImageError::Io {
            path: tmp.clone(),
            source,
        })?;
        let started = std::time::Instant::now();
        let result = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .try_for_each(|(layer, diff_id)| {
                let digest = layer.digest().to_string();
                let work = format!("layer {digest}");
                let _doing = crate::sys::panics::doing(work.clone());
                if let Some(reason) = crate::sys::panics::refused(&work) {
                    return Err(ImageError::Extract {
                        image: name.to_string(),
                        layer: digest,
                        source: extract::ExtractError::Panicked(reason),
                    });
                }
                let path = self.blob_path(&digest)?;
                let reader = extract::open_layer(&path).map_err(|source| ImageError::Io {
                    path: path.clone(),
                    source,
                })?;
                extract::apply_layer(&tmp, reader, Some(diff_id)).map_err(|source| {
                    ImageError::Extract {
                        image: name.to_string(),
                        layer: digest,
                        source,
                    }
                })?;
                Ok(())
            });
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &dest).map_err(|source| {
            let _ = fs::remove_dir_all(&tmp);
            ImageError::Io {
                path: dest.clone(),
                source,
            }
        })?;
        log::debug!(
            "image {name}: unpacked in {} ms",
            started.elapsed().as_millis()
        );
        Ok(dest)
    }
}
