//! `staticlet images import|pull|list|rm`: the local image store. `list` only reads (it
//! creates nothing); the others take the store's locks, so they work while an agent runs.

use crate::cli::{root_dir_config, Failure, ImagesAction, ImagesCmd};
use crate::image::{import, Collected, ImageStore, Reference};

pub fn run(cmd: &ImagesCmd) -> Result<(), Failure> {
    let mut config = root_dir_config(cmd.config(), cmd.root_dir())?;
    // `list` only reads: a root dir without an image store has no images, and must not get
    // one created as a side effect (opening the store creates its directories).
    if matches!(cmd.action, ImagesAction::List(_)) && !config.root_dir.join("images").is_dir() {
        list_header();
        return Ok(());
    }
    let store = ImageStore::open(&config.root_dir).map_err(|e| Failure::Failed(e.to_string()))?;
    let failed = |e: crate::image::ImageError| Failure::Failed(e.to_string());
    match &cmd.action {
        ImagesAction::Import(i) => {
            let name = match &i.name {
                Some(n) => Some(
                    Reference::parse(n)
                        .map_err(|e| Failure::Usage(format!("--name {n:?}: {e}")))?,
                ),
                None => None,
            };
            let refs = import::import(
                &store,
                &i.path,
                name.as_ref(),
                &crate::sys::timefmt::now_rfc3339(),
            )
            .map_err(failed)?;
            // Each image is unpacked before it is listed, so the first pod start does not pay
            // for it and an image that cannot unpack is never listed.
            for r in refs {
                println!("imported {r}");
            }
            Ok(())
        }
        ImagesAction::List(_) => {
            let refs = store.refs().map_err(failed)?;
            list_header();
            for (r, rec) in refs {
                let short = rec
                    .manifest
                    .trim_start_matches("sha256:")
                    .get(..12)
                    .unwrap_or("")
                    .to_string();
                println!(
                    "{r:<50} {short:<20} {:>10}  {}",
                    human_size(rec.size),
                    rec.imported
                );
            }
            Ok(())
        }
        ImagesAction::Pull(p) => {
            let reference = Reference::parse(&p.reference)
                .map_err(|e| Failure::Usage(format!("{:?}: {e}", p.reference)))?;
            if let Some(c) = &p.image_credentials {
                config.image_credentials = Some(c.clone());
            }
            let options = config.pull_options();
            let digest = crate::image::pull::pull(
                &store,
                &reference,
                &options,
                &crate::sys::timefmt::now_rfc3339(),
            )
            .map_err(failed)?;
            println!("pulled {reference} ({digest})");
            Ok(())
        }
        ImagesAction::Rm(r) => {
            let reference = Reference::parse(&r.reference)
                .map_err(|e| Failure::Usage(format!("{:?}: {e}", r.reference)))?;
            let (removed, collected) = store.remove(&reference).map_err(failed)?;
            println!("removed {removed}");
            if collected == Collected::Deferred {
                println!("(its files are deleted when the import or pull in progress ends)");
            }
            Ok(())
        }
    }
}

fn list_header() {
    println!("{:<50} {:<20} {:>10}  IMPORTED", "IMAGE", "DIGEST", "SIZE");
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}KiB", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}
