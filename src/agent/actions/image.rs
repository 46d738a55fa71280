//! Finding a container's image: the local store first, registries when the policy says so,
//! never waiting for the network when the image is there.

use super::Context;
use crate::events::{kubelet, EventSink};
use crate::image::{Image, Reference};
use crate::manifest::StaticPod;
use crate::reconcile::StartFailure;
use crate::runtime::bundle::ImageDefaults;
use std::time::{Duration, Instant};
pub(super) fn failure(reason: &str, message: impl Into<String>, ran: bool) -> StartFailure {
    StartFailure {
        reason: reason.into(),
        message: message.into(),
        ran,
    }
}

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

fn pull(config: &crate::config::Config, reference: &Reference) -> Result<(), String> {
    let _one = PULLS.lock().unwrap_or_else(|e| e.into_inner());
    let store = crate::image::ImageStore::open(&config.root_dir).map_err(|e| e.to_string())?;
    let options = crate::image::pull::PullOptions::from_config(config);
    let digest =
        crate::image::pull::pull(&store, reference, &options, &crate::timefmt::now_rfc3339())
            .map_err(|e| e.to_string())?;
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
        std::thread::spawn(move || {
            let collected = crate::image::ImageStore::open(&root).and_then(|s| s.collect_garbage());
            if let Err(e) = collected {
                log::warn!("image store: collecting garbage: {e}");
            }
        });
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
/// at the next start), and a missing image is pulled before this container starts.
pub(super) fn find_image(
    ctx: &Context,
    pod: &StaticPod,
    index: usize,
) -> Result<Image, StartFailure> {
    let c = pod.container(index);
    collect_once(&ctx.config);
    let reference = Reference::parse(&c.image)
        .map_err(|e| failure("InvalidImageName", e.to_string(), false))?;
    let local = ctx
        .store
        .resolve(&reference)
        .map_err(|e| failure("ErrImagePull", e.to_string(), false))?;
    // Like podman, images named localhost/... are local builds or imports: never pulled.
    let policy = if reference.domain == "localhost" {
        "Never"
    } else {
        c.pull_policy()
    };
    match (policy, local) {
        ("Always", Some(image)) if refresh_due(&reference) => {
            let (config, r) = (ctx.config.clone(), reference.clone());
            std::thread::spawn(move || {
                if let Err(e) = pull(&config, &r) {
                    log::warn!("image {r}: pull failed ({e}); using the local image (offline-first)");
                }
            });
            ctx.recorder.record(kubelet::already_present(pod, index));
            Ok(image)
        }
        (_, Some(image)) => {
            ctx.recorder.record(kubelet::already_present(pod, index));
            Ok(image)
        }
        ("Never", None) => Err(failure(
            "ErrImageNeverPull",
            format!("image {reference} is not in the local store and imagePullPolicy is Never; import it with `staticlet images import`"),
            false,
        )),
        (_, None) => {
            ctx.recorder.record(kubelet::pulling(pod, index));
            let began = Instant::now();
            pull(&ctx.config, &reference).map_err(|e| failure("ErrImagePull", e, false))?;
            ctx.recorder.record(kubelet::pulled(pod, index, began.elapsed()));
            match ctx.store.resolve(&reference) {
                Ok(Some(image)) => Ok(image),
                _ => Err(failure("ErrImagePull", format!("image {reference}: pulled but not found in the store"), false)),
            }
        }
    }
}
