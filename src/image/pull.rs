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
use super::store::{parse_json, MAX_JSON};
use super::{select_platform, ImageError, ImageStore, Reference};
use oci_spec::image::{ImageIndex, ImageManifest};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// How long a transfer may make no progress, as the kubelet's image pull progress deadline.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where credentials and private CAs come from.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub config_dir: PathBuf,
    pub insecure: Vec<String>,
    pub credentials: Option<PathBuf>,
    /// A transfer that makes no progress for this long fails (and resumes at the next try).
    pub idle_timeout: Duration,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            config_dir: PathBuf::new(),
            insecure: Vec::new(),
            credentials: None,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

impl PullOptions {
    pub fn from_config(c: &crate::config::Config) -> PullOptions {
        PullOptions {
            config_dir: c.config_dir.clone(),
            insecure: c.insecure_registries.clone(),
            credentials: c
                .image_credentials
                .clone()
                .or_else(|| Some(PathBuf::from("/root/.docker/config.json"))),
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

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
