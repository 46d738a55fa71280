//! Pulling images from registries (the OCI distribution API, [`super::registry`]).
//!
//! Every blob is read up to its declared size and verified against its digest as it is
//! streamed into the store ([`super::fetch`]); the image is unpacked, and only then is the
//! reference recorded, so an interrupted or failed pull never leaves a listed image that cannot
//! start. Blobs already stored are not fetched again and a broken transfer resumes where it
//! stopped, so each try continues the last one.

use super::fetch::fetch_blob;
use super::lock::Lease;
use super::registry::{err, Client};
// Where they were first defined; registries are what they configure.
pub use super::registry::{PullOptions, IDLE_TIMEOUT};
use super::store::{parse_json, MAX_JSON};
use super::{select_platform, ImageError, ImageStore, Reference};
use oci_spec::image::{ImageIndex, ImageManifest};
use serde_json::Value;

fn is_index(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .map(|v| v.get("manifests").is_some() && v.get("layers").is_none())
        .unwrap_or(false)
}

/// Pulls `reference` into the store, unpacks it and records it; returns the manifest digest.
pub fn pull(
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
    now: &str,
) -> Result<String, ImageError> {
    let lease = store.lease()?;
    let result = pull_leased(store, &lease, reference, options, now);
    drop(lease);
    if let Err(e) = store.collect_garbage() {
        log::warn!("image store: collecting garbage: {e}");
    }
    result
}

fn pull_leased(
    store: &ImageStore,
    lease: &Lease,
    reference: &Reference,
    options: &PullOptions,
    now: &str,
) -> Result<String, ImageError> {
    let mut client = Client::new(reference, options)?;
    let wanted = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (mut body, mut digest) = client.manifest(&wanted)?;
    if is_index(&body) {
        let index = parse_json::<ImageIndex>(&body)
            .map_err(|e| err(&client.registry, format!("index: {e}")))?;
        let chosen = select_platform(index.manifests(), &format!("{reference}"))?
            .digest()
            .to_string();
        (body, digest) = client.manifest(&chosen)?;
    }
    let manifest = parse_json::<ImageManifest>(&body)
        .map_err(|e| err(&client.registry, format!("manifest {digest}: {e}")))?;
    let config = manifest.config();
    if config.size() > MAX_JSON {
        return Err(err(
            &client.registry,
            format!(
                "manifest {digest}: its config is {} bytes, more than {MAX_JSON}",
                config.size()
            ),
        ));
    }
    fetch_blob(
        &mut client,
        store,
        lease,
        config.digest().as_ref(),
        config.size(),
    )?;
    for layer in manifest.layers() {
        fetch_blob(
            &mut client,
            store,
            lease,
            layer.digest().as_ref(),
            layer.size(),
        )?;
    }
    store.put_blob(
        lease,
        &body[..],
        Some(&digest),
        &format!("{}/{}@{digest}", client.registry, client.repo),
    )?;
    store.commit(lease, reference, &digest, now)?;
    Ok(digest)
}
