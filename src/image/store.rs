//! The local image store under `<rootDir>/images`: content-addressed blobs, a reference
//! table, and each image's layers unpacked once into a read-only rootfs.
//!
//! Every blob is verified against its digest before it is renamed into place, the reference
//! table is written atomically, and a rootfs is unpacked into a temporary directory that is
//! renamed only when complete, so an interrupted import never leaves a usable half image.

use super::extract::{self, hex};
use super::{ImageError, Reference};
use crate::fsutil;
use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub struct ImageStore {
    dir: PathBuf,
}

/// What the reference table records for one reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub manifest: String,
    pub config: String,
    pub size: u64,
    pub imported: String,
}

/// A resolved image: its reference, record, manifest and configuration.
pub struct Image {
    pub reference: String,
    pub record: ImageRecord,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
}

fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if super::reference::is_sha256_digest(digest) => Ok(h),
        _ => Err(ImageError::Format {
            origin: "digest".into(),
            message: format!("unsupported digest {digest:?}: only sha256 is supported"),
        }),
    }
}

impl ImageStore {
    pub fn open(root_dir: &Path) -> Result<ImageStore, ImageError> {
        let dir = root_dir.join("images");
        for sub in ["blobs/sha256", "rootfs", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|source| ImageError::Io { path: p, source })?;
        }
        // What an interrupted import or pull left behind is never used: remove the temporary
        // files of processes that are gone (names carry the writer's pid; live ones are busy).
        let tmp = dir.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let pid = name
                    .trim_start_matches('.')
                    .split('-')
                    .nth(1)
                    .and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = if e.path().is_dir() {
                        fs::remove_dir_all(e.path())
                    } else {
                        fs::remove_file(e.path())
                    };
                }
            }
        }
        Ok(ImageStore { dir })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    /// Streams `content` into the store and returns its digest. When `expected` is given, the
    /// content must hash to it, or nothing is stored.
    pub fn put_blob(
        &self,
        content: impl Read,
        expected: Option<&str>,
        origin: &str,
    ) -> Result<String, ImageError> {
        if let Some(d) = expected {
            digest_hex(d)?;
        }
        let tmp_dir = self.dir.join("tmp");
        let (tmp_path, mut file) =
            fsutil::temp_file(&tmp_dir).map_err(|source| ImageError::Io {
                path: tmp_dir.clone(),
                source,
            })?;
        let io_err = |source| ImageError::Io {
            path: PathBuf::from(origin),
            source,
        };
        let mut hasher = Sha256::new();
        let mut reader = content;
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        let result = (|| -> Result<(), ImageError> {
            loop {
                let n = reader.read(&mut buf).map_err(io_err)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n]).map_err(io_err)?;
                size += n as u64;
            }
            file.sync_all().map_err(io_err)
        })();
        let actual = format!("sha256:{}", hex(&hasher.finalize()));
        let verdict = result.and_then(|_| match expected {
            Some(e) if e != actual => Err(ImageError::Corrupt {
                origin: origin.into(),
                expected: e.into(),
                actual: actual.clone(),
            }),
            _ => Ok(()),
        });
        if let Err(e) = verdict {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        let dest = self.blob_path(&actual)?;
        fs::rename(&tmp_path, &dest).map_err(|source| ImageError::Io {
            path: dest.clone(),
            source,
        })?;
        log::debug!("stored blob {actual} ({size} bytes) from {origin}");
        Ok(actual)
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest)?;
        fs::read(&p).map_err(|source| ImageError::Io { path: p, source })
    }

    fn refs_path(&self) -> PathBuf {
        self.dir.join("refs.json")
    }

    pub fn refs(&self) -> Result<BTreeMap<String, ImageRecord>, ImageError> {
        let p = self.refs_path();
        match fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Format {
                origin: p.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(ImageError::Io { path: p, source }),
        }
    }

    fn write_refs(&self, refs: &BTreeMap<String, ImageRecord>) -> Result<(), ImageError> {
        let p = self.refs_path();
        let body = serde_json::to_vec_pretty(refs).unwrap_or_default();
        fsutil::write_atomic(&p, &body).map_err(|source| ImageError::Io { path: p, source })
    }

    /// Records `reference` for the image whose manifest blob is `manifest_digest`.
    pub fn tag(
        &self,
        reference: &Reference,
        manifest_digest: &str,
        now: &str,
    ) -> Result<(), ImageError> {
        let manifest = self.manifest(manifest_digest)?;
        let config = manifest.config().digest().to_string();
        let size =
            manifest.layers().iter().map(|l| l.size()).sum::<u64>() + manifest.config().size();
        let mut refs = self.refs()?;
        refs.insert(
            reference.to_string(),
            ImageRecord {
                manifest: manifest_digest.into(),
                config,
                size,
                imported: now.into(),
            },
        );
        self.write_refs(&refs)
    }

    pub fn manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        ImageManifest::from_reader(&self.read_blob(digest)?[..]).map_err(|e| ImageError::Format {
            origin: format!("manifest {digest}"),
            message: e.to_string(),
        })
    }

    /// Finds a stored image: by exact reference, or by digest among the stored manifests.
    pub fn resolve(&self, reference: &Reference) -> Result<Option<Image>, ImageError> {
        let refs = self.refs()?;
        let found = match &reference.digest {
            Some(d) => refs
                .iter()
                .find(|(r, rec)| &rec.manifest == d && r.starts_with(&reference.repository()))
                .or_else(|| refs.iter().find(|(_, rec)| &rec.manifest == d)),
            None => refs.get_key_value(&reference.to_string()),
        };
        let Some((name, record)) = found else {
            return Ok(None);
        };
        let manifest = self.manifest(&record.manifest)?;
        let config = ImageConfiguration::from_reader(&self.read_blob(&record.config)?[..])
            .map_err(|e| ImageError::Format {
                origin: format!("config {}", record.config),
                message: e.to_string(),
            })?;
        Ok(Some(Image {
            reference: name.clone(),
            record: record.clone(),
            manifest,
            config,
        }))
    }

    /// Whether the image's rootfs is unpacked already (using it costs no unpacking).
    pub fn is_unpacked(&self, image: &Image) -> bool {
        digest_hex(&image.record.manifest)
            .is_ok_and(|hex| self.dir.join("rootfs").join(hex).is_dir())
    }

    /// The image's unpacked, read-only rootfs; unpacked on first use.
    pub fn rootfs(&self, image: &Image) -> Result<PathBuf, ImageError> {
        let dest = self
            .dir
            .join("rootfs")
            .join(digest_hex(&image.record.manifest)?);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = self.dir.join("tmp").join(format!(
            "rootfs-{}-{}",
            std::process::id(),
            digest_hex(&image.record.manifest)?
        ));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|source| ImageError::Io {
            path: tmp.clone(),
            source,
        })?;
        let diff_ids = image.config.rootfs().diff_ids();
        let result = image
            .manifest
            .layers()
            .iter()
            .enumerate()
            .try_for_each(|(i, layer)| {
                let digest = layer.digest().to_string();
                let path = self.blob_path(&digest)?;
                let reader = extract::open_layer(&path).map_err(|source| ImageError::Io {
                    path: path.clone(),
                    source,
                })?;
                extract::apply_layer(&tmp, reader, diff_ids.get(i).map(String::as_str)).map_err(
                    |source| ImageError::Extract {
                        image: image.reference.clone(),
                        layer: digest,
                        source,
                    },
                )
            });
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &dest) {
            Ok(()) => Ok(dest),
            // Another process unpacked it first; use theirs.
            Err(_) if dest.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(dest)
            }
            Err(source) => Err(ImageError::Io { path: dest, source }),
        }
    }

    /// Removes a reference; the image's blobs and rootfs go when no reference is left and no
    /// container uses the rootfs.
    pub fn remove(&self, reference: &Reference) -> Result<String, ImageError> {
        let mut refs = self.refs()?;
        let Some(image) = self.resolve(reference)? else {
            return Err(ImageError::NotFound(reference.to_string()));
        };
        let rootfs = self
            .dir
            .join("rootfs")
            .join(digest_hex(&image.record.manifest)?);
        let still_used = refs
            .iter()
            .any(|(r, rec)| r != &image.reference && rec.manifest == image.record.manifest);
        if !still_used && fsutil::mounts_mentioning(&rootfs) {
            return Err(ImageError::InUse(image.reference));
        }
        refs.remove(&image.reference);
        self.write_refs(&refs)?;
        if !still_used {
            let _ = fs::remove_dir_all(&rootfs);
            self.collect_garbage(&refs)?;
        }
        Ok(image.reference)
    }

    /// Deletes blobs no stored reference needs any more.
    fn collect_garbage(&self, refs: &BTreeMap<String, ImageRecord>) -> Result<(), ImageError> {
        let mut keep = std::collections::HashSet::new();
        for rec in refs.values() {
            keep.insert(rec.manifest.clone());
            keep.insert(rec.config.clone());
            if let Ok(m) = self.manifest(&rec.manifest) {
                keep.extend(m.layers().iter().map(|l| l.digest().to_string()));
            }
        }
        let dir = self.dir.join("blobs/sha256");
        for entry in fs::read_dir(&dir)
            .map_err(|source| ImageError::Io {
                path: dir.clone(),
                source,
            })?
            .flatten()
        {
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            if !keep.contains(&digest) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}
