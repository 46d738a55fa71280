//! Image import: a layout made here from busybox-static, layouts and archives made by real
//! tools (umoci, skopeo), corrupted blobs, and the extracted rootfs.

use crate::common;

use common::run_ok;

use staticlet::image::{import, ImageError, ImageStore, Reference};
use std::fs;
use std::path::Path;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn store(base: &Path) -> ImageStore {
    ImageStore::open(&base.join("root")).unwrap()
}

#[test]
fn layout_made_here_imports_and_unpacks() {
    let base = common::unique_dir("img-here");
    let layout = common::busybox_layout(&base);
    let s = store(&base);
    let name = Reference::parse("localhost/here:1").unwrap();
    let refs = import::import(&s, &layout, Some(&name), "now").unwrap();
    assert_eq!(refs, vec!["localhost/here:1"]);
    let image = s.resolve(&name).unwrap().expect("stored");
    let rootfs = s.rootfs(&image).unwrap();
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("www/index.html")).unwrap(),
        "hello from a static pod\n"
    );
    // By digest too.
    let by_digest = Reference::parse(&format!("localhost/here@{}", image.record.manifest)).unwrap();
    assert!(s.resolve(&by_digest).unwrap().is_some());
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn corrupted_blob_is_refused_and_nothing_is_tagged() {
    let base = common::unique_dir("img-corrupt");
    let layout = common::busybox_layout(&base);
    // Flip a byte in the biggest blob (the layer).
    let mut biggest = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut data = fs::read(&biggest).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&mut biggest, data).unwrap();
    let s = store(&base);
    let err = import::import(
        &s,
        &layout,
        Some(&Reference::parse("localhost/bad").unwrap()),
        "now",
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("corrupted"), "{err}");
    assert!(s.refs().unwrap().is_empty());
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn real_tools_layout_and_archives_import() {
    assert!(
        have("umoci") && have("skopeo"),
        "umoci and skopeo are needed (apt-get install umoci skopeo)"
    );
    let base = common::unique_dir("img-tools");
    let made = base.join("umoci-layout");
    run_ok(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/make-image")).arg(&made),
    );
    let s = store(&base);
    let refs = import::import(&s, &made, None, "now").unwrap();
    assert_eq!(
        refs,
        vec!["localhost/umoci-layout:latest"],
        "the name defaults to the directory and tag"
    );
    let image = s
        .resolve(&Reference::parse(&refs[0]).unwrap())
        .unwrap()
        .unwrap();
    assert!(s.rootfs(&image).unwrap().join("bin/busybox").is_file());

    let oci_archive = base.join("img.oci.tar");
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:latest", made.display()),
        &format!("oci-archive:{}:ops/tool:2.0", oci_archive.display()),
    ]));
    let docker_archive = base.join("img.docker.tar");
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:latest", made.display()),
        &format!(
            "docker-archive:{}:example.com/ops/tool:3.0",
            docker_archive.display()
        ),
    ]));
    let refs = import::import(
        &s,
        &oci_archive,
        Some(&Reference::parse("localhost/from-oci-archive:1").unwrap()),
        "now",
    )
    .unwrap();
    assert_eq!(refs, vec!["localhost/from-oci-archive:1"]);
    let refs = import::import(&s, &docker_archive, None, "now").unwrap();
    assert_eq!(
        refs,
        vec!["example.com/ops/tool:3.0"],
        "docker archives carry their RepoTags"
    );
    let image = s
        .resolve(&Reference::parse("example.com/ops/tool:3.0").unwrap())
        .unwrap()
        .unwrap();
    let rootfs = s.rootfs(&image).unwrap();
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_to_string(rootfs.join("www/index.html")).unwrap(),
        "hello from a static pod\n"
    );

    // The CLI lists and removes them.
    let root = base.join("root");
    let out = Command::new(common::bin())
        .args(["images", "--root-dir"])
        .arg(&root)
        .arg("list")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("example.com/ops/tool:3.0")
            && listing.contains("localhost/from-oci-archive:1"),
        "{listing}"
    );
    run_ok(
        Command::new(common::bin())
            .args(["images", "--root-dir"])
            .arg(&root)
            .args(["rm", "example.com/ops/tool:3.0"]),
    );
    assert!(s
        .resolve(&Reference::parse("example.com/ops/tool:3.0").unwrap())
        .unwrap()
        .is_none());
    assert!(
        s.resolve(&Reference::parse("localhost/from-oci-archive:1").unwrap())
            .unwrap()
            .is_some(),
        "other images stay"
    );
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn hostile_layer_in_an_image_writes_nothing_outside() {
    let base = common::unique_dir("img-hostile");
    let layout = common::busybox_layout(&base);
    // Replace the layer with one that tries to escape, keeping digests consistent so only the
    // extraction checks stand in the way.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    let name = b"../../escaped";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let hex = |d: &[u8]| -> String {
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(d))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let layer_hex = hex(&layer);
    fs::write(layout.join("blobs/sha256").join(&layer_hex), &layer).unwrap();
    let config = serde_json::json!({"architecture": staticlet::image::host_platform().1, "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]}}).to_string();
    let config_hex = hex(config.as_bytes());
    fs::write(layout.join("blobs/sha256").join(&config_hex), &config).unwrap();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_hex}"), "size": layer.len()}]}).to_string();
    let manifest_hex = hex(manifest.as_bytes());
    fs::write(layout.join("blobs/sha256").join(&manifest_hex), &manifest).unwrap();
    fs::write(layout.join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest_hex}"), "size": manifest.len()}]}).to_string()).unwrap();
    let s = store(&base);
    let name = Reference::parse("localhost/hostile").unwrap();
    // The image is unpacked before its reference is recorded: an image that cannot unpack
    // is refused at import and never listed (so no pod start fails on it later).
    let err = import::import(&s, &layout, Some(&name), "now").unwrap_err();
    assert!(err.to_string().contains("'..'"), "{err}");
    assert!(
        s.resolve(&name).unwrap().is_none(),
        "a failed unpack is not listed"
    );
    assert!(s.refs().unwrap().is_empty());
    assert!(
        !base.join("escaped").exists()
            && !base.join("root/escaped").exists()
            && !base.join("root/images/escaped").exists()
    );
    assert!(
        fs::read_dir(base.join("root/images/rootfs"))
            .unwrap()
            .next()
            .is_none(),
        "no half image is left usable"
    );
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn an_archive_with_an_oversized_pax_header_is_refused_by_name() {
    let base = common::unique_dir("img-pax");
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/x").unwrap();
    h.set_size(512 << 20);
    h.set_cksum();
    let mut archive = h.as_bytes().to_vec();
    archive.extend(std::iter::repeat_n(b'a', 3 << 20));
    let path = base.join("hostile.tar");
    fs::write(&path, &archive).unwrap();
    let root = base.join("root");
    let out = Command::new(common::bin())
        .args(["images", "--root-dir"])
        .arg(&root)
        .arg("import")
        .arg(&path)
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{msg}");
    assert!(msg.contains("extended headers"), "{msg}");
    let _ = fs::remove_dir_all(base);
}
