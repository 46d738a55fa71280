//! Finding a container's image: the local store first, registries when the policy says so,
//! never waiting for the network when the image is there.

use super::Context;
use crate::image::{Image, ImageError, Reference};
use crate::manifest::pod::Container;
use crate::manifest::PullPolicy;
use crate::runtime::bundle::ImageDefaults;
use crate::runtime::StartError;
use std::time::{Duration, Instant};

pub(super) fn image_defaults(image: &Image) -> ImageDefaults {
    let c = image.config.config().clone().unwrap_or_default();
    ImageDefaults {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone(),
    }
}

/// One pull at a time: a gateway's uplink is narrow, and two pods wanting one image should
/// not fetch it twice.
static PULLS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pull(config: &crate::config::Config, reference: &Reference) -> Result<(), ImageError> {
    let _one = PULLS.lock().unwrap_or_else(|e| e.into_inner());
    let store = crate::image::ImageStore::open(&config.root_dir)?;
    let options = config.pull_options();
    let digest = crate::image::pull::pull(
        &store,
        reference,
        &options,
        &crate::sys::timefmt::now_rfc3339(),
    )?;
    log::info!("image {reference}: pulled ({digest})");
    Ok(())
}

/// Once per agent, in the background: what an interrupted unpack or pull left in the store,
/// and images re-pulled while containers still used them, are collected (never a rootfs that
/// a running container's overlay still uses). Off the start path: a pod never waits for it.
fn collect_once(config: &crate::config::Config) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let root = config.root_dir.clone();
        let spawned = std::thread::Builder::new()
            .name("image-gc".into())
            .spawn(move || {
                let collected =
                    crate::image::ImageStore::open(&root).and_then(|s| s.collect_garbage());
                if let Err(e) = collected {
                    log::warn!("image store: collecting garbage: {e}");
                }
            });
        if let Err(e) = spawned {
            log::warn!("image store: cannot start the collection thread ({e}); it runs after the next import or pull");
        }
    });
}

/// Whether an `Always` image is due for a background refresh (at most every 5 minutes, so a
/// crash-looping container does not hammer the registry).
fn refresh_due(reference: &Reference) -> bool {
    static LAST: std::sync::Mutex<Vec<(String, Instant)>> = std::sync::Mutex::new(Vec::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let key = reference.to_string();
    last.retain(|(_, t)| t.elapsed() < Duration::from_secs(300));
    if last.iter().any(|(k, _)| *k == key) {
        return false;
    }
    last.push((key, Instant::now()));
    true
}

/// Finds the container's image, honouring imagePullPolicy the offline-first way: a present
/// image is used at once; `Always` refreshes it in the background (the new version is used
/// at the next start), and a missing image is pulled before this container starts. Also
/// says whether it was pulled for this start.
pub(super) fn find_image(ctx: &Context, c: &Container) -> Result<(Image, bool), StartError> {
    collect_once(&ctx.config);
    let reference = Reference::parse(&c.image).map_err(StartError::InvalidImageName)?;
    let local = ctx.store.resolve(&reference).map_err(StartError::Image)?;
    // Like podman, images named localhost/... are local builds or imports: never pulled.
    let policy = if reference.domain == "localhost" {
        PullPolicy::Never
    } else {
        c.pull_policy()
    };
    match (policy, local) {
        (PullPolicy::Always, Some(image)) if refresh_due(&reference) => {
            let (config, r) = (ctx.config.clone(), reference.clone());
            let spawned = std::thread::Builder::new()
                .name("image-refresh".into())
                .spawn(move || {
                    if let Err(e) = pull(&config, &r) {
                        log::warn!(
                            "image {r}: pull failed ({e}); using the local image (offline-first)"
                        );
                    }
                });
            if let Err(e) = spawned {
                log::warn!(
                    "image {reference}: cannot start the refresh ({e}); using the local image"
                );
            }
            Ok((image, false))
        }
        (_, Some(image)) => Ok((image, false)),
        (PullPolicy::Never, None) => Err(StartError::NeverPull {
            image: reference.to_string(),
        }),
        (_, None) => {
            pull(&ctx.config, &reference).map_err(|e| StartError::Pull {
                image: reference.to_string(),
                message: e.to_string(),
            })?;
            match ctx.store.resolve(&reference) {
                Ok(Some(image)) => Ok((image, true)),
                _ => Err(StartError::PulledButMissing {
                    image: reference.to_string(),
                }),
            }
        }
    }
}
