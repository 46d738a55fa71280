//! The image store under concurrent use by real processes (`staticlet images ...` run at the
//! same time, as an admin does while an agent pulls), garbage collection around a rootfs that
//! a mounted overlay still uses, a full disk, and malformed images refused at import.

use crate::common;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn images(root: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(["images", "--root-dir"])
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn listing(root: &Path) -> String {
    let out = images(root, &["list"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Rewrites a layout's config with `edit` (manifest and index follow); returns the new
/// manifest digest.
fn edit_config(layout: &Path, edit: impl FnOnce(&mut Value) -> Vec<u8>) -> String {
    let mut index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Value =
        serde_json::from_slice(&fs::read(blob(layout, &digest)).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: Value =
        serde_json::from_slice(&fs::read(blob(layout, &config_digest)).unwrap()).unwrap();
    let bytes = edit(&mut config);
    fs::write(layout.join("blobs/sha256").join(sha(&bytes)), &bytes).unwrap();
    manifest["config"]["digest"] = json!(format!("sha256:{}", sha(&bytes)));
    manifest["config"]["size"] = json!(bytes.len());
    let m = manifest.to_string().into_bytes();
    fs::write(layout.join("blobs/sha256").join(sha(&m)), &m).unwrap();
    index["manifests"][0]["digest"] = json!(format!("sha256:{}", sha(&m)));
    index["manifests"][0]["size"] = json!(m.len());
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    format!("sha256:{}", sha(&m))
}

fn layer_digest(layout: &Path) -> String {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(&fs::read(blob(layout, digest)).unwrap()).unwrap();
    manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn read_only_commands_create_nothing() {
    let base = unique_dir("store-ro");
    let root = base.join("no-such-root");
    let out = images(&root, &["list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!root.exists(), "`images list` created {}", root.display());
    let _ = fs::remove_dir_all(base);
}

#[test]
fn concurrent_imports_keep_every_reference() {
    let base = unique_dir("store-conc");
    let layout = busybox_layout(&base);
    let root = base.join("root");
    for round in 0..3 {
        let children: Vec<_> = (0..6)
            .map(|i| {
                Command::new(bin())
                    .args(["images", "--root-dir"])
                    .arg(&root)
                    .arg("import")
                    .arg(&layout)
                    .args(["--name", &format!("localhost/c{round}-{i}:1")])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
        }
        let list = listing(&root);
        for i in 0..6 {
            assert!(
                list.contains(&format!("localhost/c{round}-{i}:1")),
                "round {round}, import {i} lost:\n{list}"
            );
        }
    }
    let _ = fs::remove_dir_all(base);
}

#[test]
fn two_unpacks_of_one_image_at_once_both_get_the_whole_rootfs() {
    use staticlet::image::{import, ImageStore, Reference};
    let base = unique_dir("store-unpack");
    let layout = busybox_layout(&base);
    let store = ImageStore::open(&base.join("root")).unwrap();
    let name = Reference::parse("localhost/twice:1").unwrap();
    import::import(&store, &layout, Some(&name), "now").unwrap();
    for round in 0..5 {
        let image = store.resolve(&name).unwrap().unwrap();
        // As after an upgrade from a version that unpacked lazily: the rootfs is missing.
        let _ = fs::remove_dir_all(store.rootfs(&image).unwrap());
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let pods: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let image = store.resolve(&name).unwrap().unwrap();
                        barrier.wait();
                        store.rootfs(&image).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for p in pods {
                let rootfs = p
                    .join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
                assert!(
                    rootfs.join("bin/busybox").is_file(),
                    "round {round}: empty rootfs"
                );
                assert!(rootfs.join("etc/passwd").is_file(), "round {round}");
            }
        });
    }
    let _ = fs::remove_dir_all(base);
}

#[test]
fn rm_during_an_import_does_not_delete_the_import_blobs() {
    let base = unique_dir("store-rm-import");
    let slow = busybox_layout(&base.join("slow"));
    let other = busybox_layout(&base.join("other"));
    let root = base.join("root");
    // The import of `slow` blocks reading its layer (a FIFO) until the test feeds it, after it
    // stored the manifest and config: the moment a collection must not take them.
    let layer_path = blob(&slow, &layer_digest(&slow));
    let layer = fs::read(&layer_path).unwrap();
    fs::remove_file(&layer_path).unwrap();
    let status = Command::new("mkfifo").arg(&layer_path).status().unwrap();
    assert!(status.success());
    let importing = Command::new(bin())
        .args(["images", "--root-dir"])
        .arg(&root)
        .arg("import")
        .arg(&slow)
        .args(["--name", "localhost/slow:1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let config_blob = {
        let index: Value =
            serde_json::from_slice(&fs::read(slow.join("index.json")).unwrap()).unwrap();
        let m: Value = serde_json::from_slice(
            &fs::read(blob(
                &slow,
                index["manifests"][0]["digest"].as_str().unwrap(),
            ))
            .unwrap(),
        )
        .unwrap();
        m["config"]["digest"].as_str().unwrap().to_string()
    };
    wait_until(
        "the import to store its config",
        Duration::from_secs(30),
        || {
            root.join("images/blobs/sha256")
                .join(config_blob.trim_start_matches("sha256:"))
                .exists()
                .then_some(())
        },
    );
    let out = images(
        &root,
        &[
            "import",
            other.to_str().unwrap(),
            "--name",
            "localhost/other:1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = images(&root, &["rm", "localhost/other:1"]);
    assert!(out.status.success(), "{}", text(&out));
    fs::write(&layer_path, &layer).unwrap();
    let out = importing.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the import survives the rm: {}",
        text(&out)
    );
    assert!(listing(&root).contains("localhost/slow:1"));
    assert!(!listing(&root).contains("localhost/other:1"));
    let rootfs = fs::read_dir(root.join("images/rootfs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert!(rootfs.join("bin/busybox").is_file());
    let _ = fs::remove_dir_all(base);
}

fn mount_overlay(lower: &Path, base: &Path) -> PathBuf {
    let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
    for d in [&upper, &work, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .output()
        .unwrap();
    assert!(out.status.success(), "mount: {}", text(&out));
    merged
}

#[test]
fn a_retagged_image_is_collected_once_no_container_uses_it() {
    let base = unique_dir("store-retag");
    let v1 = busybox_layout(&base.join("v1"));
    let v2 = busybox_layout(&base.join("v2"));
    let v2_digest = edit_config(&v2, |c| {
        c["config"]["Env"] = json!(["PATH=/bin", "VERSION=2"]);
        c.to_string().into_bytes()
    });
    let root = base.join("root");
    let out = images(
        &root,
        &["import", v1.to_str().unwrap(), "--name", "localhost/app:1"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let rootfs_dir = root.join("images/rootfs");
    let old: Vec<PathBuf> = fs::read_dir(&rootfs_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(old.len(), 1);
    let merged = mount_overlay(&old[0], &base);
    let out = images(
        &root,
        &["import", v2.to_str().unwrap(), "--name", "localhost/app:1"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        old[0].join("bin/busybox").is_file(),
        "a rootfs in use is kept"
    );
    let status = Command::new("umount").arg(&merged).status().unwrap();
    assert!(status.success());
    // The next store operation collects it.
    let out = images(
        &root,
        &["import", v2.to_str().unwrap(), "--name", "localhost/app:2"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let left: Vec<PathBuf> = fs::read_dir(&rootfs_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(
        left,
        vec![rootfs_dir.join(v2_digest.trim_start_matches("sha256:"))],
        "only the current image's rootfs is left"
    );
    let _ = fs::remove_dir_all(base);
}

#[test]
fn a_full_disk_is_reported_against_the_store() {
    let base = unique_dir("store-enospc");
    let layout = busybox_layout(&base);
    let root = base.join("root");
    fs::create_dir_all(&root).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "mount: {}", text(&out));
    let out = images(
        &root,
        &[
            "import",
            layout.to_str().unwrap(),
            "--name",
            "localhost/big:1",
        ],
    );
    let _ = Command::new("umount").arg(&root).status();
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(
        msg.contains(&root.join("images").display().to_string()),
        "the message names the file being written in the store: {msg}"
    );
    assert!(
        !msg.contains(&layout.display().to_string()),
        "not the source: {msg}"
    );
    let _ = fs::remove_dir_all(base);
}

#[test]
fn malformed_images_are_refused_at_import_and_never_listed() {
    let base = unique_dir("store-malformed");
    let root = base.join("root");
    let few = busybox_layout(&base.join("few"));
    edit_config(&few, |c| {
        c["rootfs"]["diff_ids"] = json!([]);
        c.to_string().into_bytes()
    });
    let out = images(
        &root,
        &["import", few.to_str().unwrap(), "--name", "localhost/few:1"],
    );
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains("localhost/few:1") && msg.contains("1 layers") && msg.contains("0 diff_ids"),
        "{msg}"
    );
    let garbage = busybox_layout(&base.join("garbage"));
    edit_config(&garbage, |_| b"{\"rootfs\": 42}".to_vec());
    let out = images(
        &root,
        &[
            "import",
            garbage.to_str().unwrap(),
            "--name",
            "localhost/garbage:1",
        ],
    );
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    let config = format!("sha256:{}", sha(b"{\"rootfs\": 42}"));
    assert!(
        msg.contains(&config) && msg.contains("rootfs"),
        "names the blob and the error: {msg}"
    );
    let list = listing(&root);
    assert!(!list.contains("few") && !list.contains("garbage"), "{list}");
    let _ = fs::remove_dir_all(base);
}
