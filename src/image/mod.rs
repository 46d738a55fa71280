//! Images: references, the local store (blobs, references, unpacked rootfs, their locks and
//! garbage collection), safe layer extraction, import of the archives that skopeo, podman
//! and docker produce, and pulls from registries.

pub mod beneath;
pub mod extract;
mod fetch;
pub mod gc;
pub mod import;
pub mod lock;
pub mod pull;
pub mod reference;
mod registry;
pub mod store;
mod unpack;

pub use gc::Collected;
pub use reference::Reference;
pub use store::{Image, ImageStore};

use oci_spec::image::Descriptor;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: blob is corrupted: expected {expected}, content hashes to {actual}")]
    Corrupt {
        origin: String,
        expected: String,
        actual: String,
    },
    #[error("{origin}: {message}")]
    Format { origin: String, message: String },
    #[error("image {0} is not in the local store (import it with `staticlet images import`)")]
    NotFound(String),
    #[error("image {image}, layer {layer}: {source}")]
    Extract {
        image: String,
        layer: String,
        source: extract::ExtractError,
    },
    #[error("image index {index} has no image for {wanted} (it has: {available})")]
    NoPlatform {
        index: String,
        wanted: String,
        available: String,
    },
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("image {0} is in use by a container; stop its pods first")]
    InUse(String),
}

/// This machine's platform in OCI terms: (`linux`, architecture, variant).
pub fn host_platform() -> (&'static str, &'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("linux", "amd64", None),
        "aarch64" => ("linux", "arm64", Some("v8")),
        "arm" => ("linux", "arm", Some("v7")),
        "x86" => ("linux", "386", None),
        other => ("linux", other, None),
    }
}

/// Picks the index entry for this machine; an entry without a platform only when it is alone.
pub fn select_platform<'a>(
    entries: &'a [Descriptor],
    index: &str,
) -> Result<&'a Descriptor, ImageError> {
    let (os, arch, variant) = host_platform();
    let matches = |d: &&Descriptor| {
        d.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == os
                && p.architecture().to_string() == arch
                && match (p.variant().as_deref(), variant) {
                    (None, _) | (_, None) => true,
                    // arm64 images are often labelled without a variant or with v8.
                    (Some(v), Some(want)) => v == want,
                }
        })
    };
    if let Some(d) = entries.iter().find(matches) {
        return Ok(d);
    }
    if let [only] = entries {
        if only.platform().is_none() {
            return Ok(only);
        }
    }
    let available: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| match p.variant() {
            Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
            None => format!("{}/{}", p.os(), p.architecture()),
        })
        .collect();
    Err(ImageError::NoPlatform {
        index: index.to_string(),
        wanted: match variant {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        },
        available: available.join(", "),
    })
}
