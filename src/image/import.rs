//! `staticlet images import`: OCI image layout directories, OCI archives
//! (`skopeo copy ... oci-archive:`) and docker archives (`docker save`, `podman save`),
//! optionally gzip-compressed. Every blob is verified against its digest as it is stored.

use super::extract::{clean_entry_name, Budget};
use super::lock::Lease;
use super::store::{parse_json, ImageStore};
use super::{select_platform, ImageError, Reference};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

const MAX_METADATA: u64 = 10 * 1024 * 1024;
const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANN_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Where the blobs of the image being imported live.
enum Blobs<'a> {
    /// An OCI layout directory: blobs are copied into the store (and verified) on demand.
    Layout(&'a Path),
    /// An archive: every blob was already stored (and verified) while reading it.
    Stored,
}

impl Blobs<'_> {
    fn ensure(
        &self,
        store: &ImageStore,
        lease: &Lease,
        digest: &str,
        origin: &Path,
    ) -> Result<(), ImageError> {
        if store.has_blob(digest) {
            return Ok(());
        }
        match self {
            Blobs::Layout(dir) => {
                let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
                let path = dir.join("blobs/sha256").join(hex);
                let f = File::open(&path).map_err(|source| ImageError::Io {
                    path: path.clone(),
                    source,
                })?;
                store.put_blob(
                    lease,
                    BufReader::new(f),
                    Some(digest),
                    &path.display().to_string(),
                )?;
                Ok(())
            }
            Blobs::Stored => Err(ImageError::Format {
                origin: origin.display().to_string(),
                message: format!("blob {digest} is missing from the archive"),
            }),
        }
    }
}

/// The name an image gets when its archive does not carry a full one: `localhost/<file stem>`.
fn default_repository(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = name
        .trim_end_matches(".gz")
        .trim_end_matches(".tgz")
        .trim_end_matches(".tar")
        .trim_end_matches(".oci");
    let clean: String = stem
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    format!(
        "localhost/{}",
        if clean.is_empty() { "image" } else { clean }
    )
}

fn name_for(
    annotation: Option<&String>,
    containerd: Option<&String>,
    path: &Path,
) -> Result<Reference, ImageError> {
    let text = match (containerd, annotation) {
        (Some(full), _) => full.clone(),
        (None, Some(r)) if r.contains('/') => r.clone(),
        (None, Some(tag)) => format!("{}:{tag}", default_repository(path)),
        (None, None) => default_repository(path),
    };
    Reference::parse(&text).map_err(|e| ImageError::Format {
        origin: path.display().to_string(),
        message: format!("image name {text:?}: {e}"),
    })
}

/// Imports every image in `path`; `name` renames a single image. Each image is unpacked
/// before its reference is recorded. Returns the stored references.
pub fn import(
    store: &ImageStore,
    path: &Path,
    name: Option<&Reference>,
    now: &str,
) -> Result<Vec<String>, ImageError> {
    let lease = store.lease()?;
    let result = import_leased(store, &lease, path, name, now);
    drop(lease);
    // What a re-tag replaced, or what a failed import stored, goes now (or at the end of
    // the operation still in progress).
    if let Err(e) = store.collect_garbage() {
        log::warn!("image store: collecting garbage: {e}");
    }
    result
}

fn import_leased(
    store: &ImageStore,
    lease: &Lease,
    path: &Path,
    name: Option<&Reference>,
    now: &str,
) -> Result<Vec<String>, ImageError> {
    let io_err = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        let index = std::fs::read(path.join("index.json")).map_err(|source| ImageError::Io {
            path: path.join("index.json"),
            source,
        })?;
        return import_oci(store, lease, &index, &Blobs::Layout(path), path, name, now);
    }
    let mut file = File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 2];
    let gz = file.read(&mut magic).map_err(io_err)? == 2 && magic == [0x1f, 0x8b];
    let file = File::open(path).map_err(io_err)?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let files = store_archive(store, lease, reader, path)?;
    if let Some(index) = files.metadata.get("index.json") {
        import_oci(store, lease, index, &Blobs::Stored, path, name, now)
    } else if let Some(manifest) = files.metadata.get("manifest.json") {
        import_docker(store, lease, manifest, &files.digests, path, name, now)
    } else {
        Err(ImageError::Format {
            origin: path.display().to_string(),
            message:
                "neither an OCI archive (no index.json) nor a docker archive (no manifest.json)"
                    .into(),
        })
    }
}

struct ArchiveFiles {
    metadata: HashMap<String, Vec<u8>>,
    digests: HashMap<String, String>,
}

/// Reads an archive once: metadata files into memory, everything else into the blob store.
fn store_archive(
    store: &ImageStore,
    lease: &Lease,
    reader: impl Read,
    path: &Path,
) -> Result<ArchiveFiles, ImageError> {
    let origin = path.display().to_string();
    let bad = |message: String| ImageError::Format {
        origin: origin.clone(),
        message,
    };
    let mut files = ArchiveFiles {
        metadata: HashMap::new(),
        digests: HashMap::new(),
    };
    let (mut archive, budget) = Budget::archive(reader);
    let mut entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    while let Some(entry) = budget.next(&mut entries) {
        let mut entry = entry.map_err(|e| bad(format!("reading archive: {e}")))?;
        if !entry.header().entry_type().is_file() {
            // Read to its end, so that the next step reads headers only.
            std::io::copy(&mut entry, &mut std::io::sink())
                .map_err(|e| bad(format!("reading archive: {e}")))?;
            continue;
        }
        let raw = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let name = clean_entry_name(&raw)
            .map_err(|reason| bad(format!("entry {:?}: {reason}", raw.display())))?;
        let name = name.to_string_lossy().to_string();
        if matches!(
            name.as_str(),
            "index.json" | "manifest.json" | "oci-layout" | "repositories"
        ) {
            let mut buf = Vec::new();
            entry
                .by_ref()
                .take(MAX_METADATA)
                .read_to_end(&mut buf)
                .map_err(|e| bad(e.to_string()))?;
            std::io::copy(&mut entry, &mut std::io::sink())
                .map_err(|e| bad(format!("reading archive: {e}")))?;
            files.metadata.insert(name, buf);
            continue;
        }
        // Names that carry a digest are verified against it: OCI blobs and docker configs.
        let expected = if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            Some(format!("sha256:{hex}"))
        } else {
            name.strip_suffix(".json")
                .filter(|h| h.len() == 64 && !h.contains('/'))
                .map(|h| format!("sha256:{h}"))
        };
        let digest = store.put_blob(
            lease,
            &mut entry,
            expected.as_deref(),
            &format!("{origin}: {name}"),
        )?;
        files.digests.insert(name, digest);
    }
    Ok(files)
}

fn import_oci(
    store: &ImageStore,
    lease: &Lease,
    index: &[u8],
    blobs: &Blobs,
    path: &Path,
    name: Option<&Reference>,
    now: &str,
) -> Result<Vec<String>, ImageError> {
    let origin = path.display().to_string();
    let index = parse_json::<ImageIndex>(index).map_err(|e| ImageError::Format {
        origin: format!("{origin}: index.json"),
        message: e.to_string(),
    })?;
    let mut stored = Vec::new();
    for (i, desc) in index.manifests().iter().enumerate() {
        let annotations = desc.annotations().clone().unwrap_or_default();
        let reference = match name {
            Some(n) if i == 0 => n.clone(),
            _ => name_for(
                annotations.get(ANN_REF_NAME),
                annotations.get(ANN_CONTAINERD_NAME),
                path,
            )?,
        };
        let manifest = resolve_manifest(store, lease, blobs, desc, path)?;
        let m = store.manifest(&manifest)?;
        blobs.ensure(store, lease, m.config().digest().as_ref(), path)?;
        for layer in m.layers() {
            blobs.ensure(store, lease, layer.digest().as_ref(), path)?;
        }
        store.commit(lease, &reference, &manifest, now)?;
        stored.push(reference.to_string());
    }
    if stored.is_empty() {
        return Err(ImageError::Format {
            origin,
            message: "index.json lists no image".into(),
        });
    }
    Ok(stored)
}

/// Indexes inside indexes followed at most (real images nest one level).
const MAX_NESTING: usize = 8;

/// Follows an index entry down to the image manifest for this machine's platform.
fn resolve_manifest(
    store: &ImageStore,
    lease: &Lease,
    blobs: &Blobs,
    desc: &Descriptor,
    path: &Path,
) -> Result<String, ImageError> {
    let mut desc = desc.clone();
    for _ in 0..MAX_NESTING {
        let digest = desc.digest().to_string();
        blobs.ensure(store, lease, &digest, path)?;
        let is_index = matches!(desc.media_type(), MediaType::ImageIndex)
            || desc.media_type().to_string()
                == "application/vnd.docker.distribution.manifest.list.v2+json";
        if !is_index {
            return Ok(digest);
        }
        let nested = parse_json::<ImageIndex>(&store.read_blob(&digest)?).map_err(|e| {
            ImageError::Format {
                origin: format!("index {digest}"),
                message: e.to_string(),
            }
        })?;
        desc = select_platform(nested.manifests(), &digest)?.clone();
    }
    Err(ImageError::Format {
        origin: path.display().to_string(),
        message: format!("image indexes nested deeper than {MAX_NESTING} levels"),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker(
    store: &ImageStore,
    lease: &Lease,
    manifest: &[u8],
    digests: &HashMap<String, String>,
    path: &Path,
    name: Option<&Reference>,
    now: &str,
) -> Result<Vec<String>, ImageError> {
    let origin = path.display().to_string();
    let bad = |message: String| ImageError::Format {
        origin: origin.clone(),
        message,
    };
    let entries: Vec<DockerManifest> =
        serde_json::from_slice(manifest).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let mut stored = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let descriptor = |file: &str, media: &str| -> Result<serde_json::Value, ImageError> {
            let digest = digests.get(file.trim_start_matches("./")).ok_or_else(|| {
                bad(format!(
                    "manifest.json names {file:?}, which is not in the archive"
                ))
            })?;
            let size = std::fs::metadata(store.blob_path(digest)?)
                .map(|m| m.len())
                .unwrap_or(0);
            Ok(json!({"mediaType": media, "digest": digest, "size": size}))
        };
        let layers = entry
            .layers
            .iter()
            .map(|l| descriptor(l, "application/vnd.oci.image.layer.v1.tar"))
            .collect::<Result<Vec<_>, _>>()?;
        let oci = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(&entry.config, "application/vnd.oci.image.config.v1+json")?,
            "layers": layers,
        });
        let body = serde_json::to_vec(&oci).map_err(|e| bad(e.to_string()))?;
        let manifest_digest =
            store.put_blob(lease, &body[..], None, &format!("{origin}: manifest.json"))?;
        let mut names: Vec<Reference> = match name {
            Some(n) if i == 0 => vec![n.clone()],
            _ => entry
                .repo_tags
                .iter()
                .flatten()
                .map(|t| Reference::parse(t).map_err(|e| bad(format!("RepoTags {t:?}: {e}"))))
                .collect::<Result<_, _>>()?,
        };
        if names.is_empty() {
            names.push(name_for(None, None, path)?);
        }
        for n in names {
            store.commit(lease, &n, &manifest_digest, now)?;
            stored.push(n.to_string());
        }
    }
    Ok(stored)
}
