//! The local image store under `<rootDir>/images`: content-addressed blobs, a reference
//! table, and each image's layers unpacked once into a read-only rootfs.
//!
//! Every blob is verified against its digest before it is renamed into place, the reference
//! table is written atomically under the store lock ([`super::lock`]), and a reference is
//! recorded only once its image is completely unpacked ([`super::unpack`]), so an interrupted
//! or failed import never leaves a listed image that cannot start. Opening the store creates
//! nothing: read-only commands leave no trace; the first write lays the directories out.

use super::extract::hex;
use super::lock::Lease;
use super::{ImageError, Reference};
use crate::sys::fsutil;
use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Manifests, indexes and configs are read into memory: at most this big (containerd's
/// limit for manifests is 4 MiB; configs of real images are far below it).
pub const MAX_JSON: u64 = 8 * 1024 * 1024;

pub struct ImageStore {
    pub(super) dir: PathBuf,
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

pub(super) fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if super::reference::is_sha256_digest(digest) => Ok(h),
        _ => Err(ImageError::Format {
            origin: "digest".into(),
            message: format!("unsupported digest {digest:?}: only sha256 is supported"),
        }),
    }
}

/// Parses JSON into `T`; the error names the field at fault (`rootfs.diff_ids: ...`).
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })
}

impl ImageStore {
    /// The store of `root_dir`; nothing is created until something is written.
    pub fn open(root_dir: &Path) -> Result<ImageStore, ImageError> {
        Ok(ImageStore {
            dir: root_dir.join("images"),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn ensure_layout(&self) -> Result<(), ImageError> {
        for sub in ["blobs/sha256", "rootfs", "tmp"] {
            let p = self.dir.join(sub);
            fs::create_dir_all(&p).map_err(|source| ImageError::Io { path: p, source })?;
        }
        Ok(())
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    /// Streams `content` into the store and returns its digest. When `expected` is given, the
    /// content must hash to it, or nothing is stored. Read errors name `origin`, write errors
    /// (a full disk) the file being written in the store.
    pub fn put_blob(
        &self,
        _lease: &Lease,
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
        let read_err = |source| ImageError::Io {
            path: PathBuf::from(origin),
            source,
        };
        let write_err = |source| ImageError::Io {
            path: tmp_path.clone(),
            source,
        };
        let mut hasher = Sha256::new();
        let mut reader = content;
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        let result = (|| -> Result<(), ImageError> {
            loop {
                let n = reader.read(&mut buf).map_err(read_err)?;
                let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
                    break;
                };
                hasher.update(chunk);
                file.write_all(chunk).map_err(write_err)?;
                size += n as u64;
            }
            file.sync_all().map_err(write_err)
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

    /// A metadata blob (manifest, index, config), refused beyond [`MAX_JSON`].
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest)?;
        let io_err = |source| ImageError::Io {
            path: p.clone(),
            source,
        };
        let f = fs::File::open(&p).map_err(io_err)?;
        let mut body = Vec::new();
        f.take(MAX_JSON + 1)
            .read_to_end(&mut body)
            .map_err(io_err)?;
        if body.len() as u64 > MAX_JSON {
            return Err(ImageError::Format {
                origin: format!("blob {digest}"),
                message: format!("larger than {MAX_JSON} bytes, too big for a manifest or config"),
            });
        }
        Ok(body)
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

    /// Writes the reference table; the caller holds the store lock.
    pub(super) fn write_refs(
        &self,
        refs: &BTreeMap<String, ImageRecord>,
    ) -> Result<(), ImageError> {
        let p = self.refs_path();
        let body = serde_json::to_vec_pretty(refs).map_err(|e| ImageError::Io {
            path: p.clone(),
            source: std::io::Error::other(e),
        })?;
        fsutil::write_atomic(&p, &body).map_err(|source| ImageError::Io { path: p, source })
    }

    pub fn manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        parse_json(&self.read_blob(digest)?).map_err(|message| ImageError::Format {
            origin: format!("manifest {digest}"),
            message: format!("not an image manifest: {message}"),
        })
    }

    /// The manifest and config of a stored image, checked as an image must be to run: the
    /// config parses, and it names one diff ID per layer.
    pub fn load_image(
        &self,
        name: &str,
        manifest_digest: &str,
    ) -> Result<(ImageManifest, ImageConfiguration), ImageError> {
        let manifest = self.manifest(manifest_digest)?;
        let config_digest = manifest.config().digest().to_string();
        let config: ImageConfiguration =
            parse_json(&self.read_blob(&config_digest)?).map_err(|message| ImageError::Format {
                origin: format!("image {name}: config blob {config_digest}"),
                message: format!("not an image configuration: {message}"),
            })?;
        let (layers, diff_ids) = (manifest.layers().len(), config.rootfs().diff_ids().len());
        if layers != diff_ids {
            return Err(ImageError::Format {
                origin: format!("image {name}"),
                message: format!("its manifest has {layers} layers but its config lists {diff_ids} diff_ids; the image is malformed"),
            });
        }
        Ok((manifest, config))
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
        let (manifest, config) = self.load_image(name, &record.manifest)?;
        Ok(Some(Image {
            reference: name.clone(),
            record: record.clone(),
            manifest,
            config,
        }))
    }
}
