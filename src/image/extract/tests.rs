use super::*;
use std::fs;

mod hostile;

/// Builds a tar with raw names, bypassing the tar crate's own `..` checks, as an attacker would.
pub(super) fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub(super) fn sandbox() -> (PathBuf, PathBuf) {
    let base = std::env::temp_dir().join(format!(
        "staticlet-extract-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let root = base.join("rootfs");
    fs::create_dir_all(&root).unwrap();
    (base, root)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Every path below `base` but outside its rootfs, to prove nothing was written beside it.
pub(super) fn tree(base: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            out.push(e.path().strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.retain(|p| !p.starts_with("rootfs/"));
    out.sort();
    out
}

use tar::EntryType as T;

#[test]
fn regular_layer_with_whiteouts() {
    let (base, root) = sandbox();
    let l1 = raw_tar(&[
        ("etc/", T::Directory, "", b""),
        ("etc/a", T::Regular, "", b"a"),
        ("etc/b", T::Regular, "", b"b"),
        ("opq/", T::Directory, "", b""),
        ("opq/old", T::Regular, "", b"x"),
        ("bin/", T::Directory, "", b""),
        ("bin/busybox", T::Regular, "", b"#!"),
        ("bin/sh", T::Symlink, "busybox", b""),
        ("bin/abs", T::Symlink, "/bin/busybox", b""),
        ("bin/hl", T::Link, "bin/busybox", b""),
    ]);
    apply_layer(&root, &l1[..], None).unwrap();
    let l2 = raw_tar(&[
        ("etc/.wh.a", T::Regular, "", b""),
        ("opq/new", T::Regular, "", b"n"),
        ("opq/.wh..wh..opq", T::Regular, "", b""),
    ]);
    apply_layer(&root, &l2[..], None).unwrap();
    assert!(!root.join("etc/a").exists());
    assert_eq!(fs::read(root.join("etc/b")).unwrap(), b"b");
    assert!(
        !root.join("opq/old").exists(),
        "opaque dir hides the lower layer"
    );
    assert!(
        root.join("opq/new").exists(),
        "but keeps what its own layer wrote"
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(fs::read(root.join("bin/hl")).unwrap(), b"#!");
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn hostile_entries_are_refused_and_nothing_lands_outside() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", raw_tar(&[("../evil", T::Regular, "", b"x")])),
        (
            "nested dotdot",
            raw_tar(&[("a/../../evil", T::Regular, "", b"x")]),
        ),
        ("absolute", raw_tar(&[("/evil", T::Regular, "", b"x")])),
        (
            "escaping symlink",
            raw_tar(&[("link", T::Symlink, "../../..", b"")]),
        ),
        (
            "escaping nested symlink",
            raw_tar(&[
                ("a/", T::Directory, "", b""),
                ("a/l", T::Symlink, "../../x", b""),
            ]),
        ),
        (
            "hard link out",
            raw_tar(&[("hl", T::Link, "../outside", b"")]),
        ),
        (
            "absolute hard link",
            raw_tar(&[("hl", T::Link, "/etc/passwd", b"")]),
        ),
    ];
    for (what, layer) in cases {
        let (base, root) = sandbox();
        fs::write(base.join("outside"), b"keep").unwrap();
        let before = tree(&base);
        let err = apply_layer(&root, &layer[..], None);
        assert!(
            matches!(err, Err(ExtractError::Refused { .. })),
            "{what}: {err:?}"
        );
        assert_eq!(tree(&base), before, "{what}: nothing may be written");
        assert_eq!(fs::read(base.join("outside")).unwrap(), b"keep");
        fs::remove_dir_all(base).unwrap();
    }
}

#[test]
fn writes_through_an_absolute_symlink_stay_inside() {
    let (base, root) = sandbox();
    let outside = base.join("outside-dir");
    fs::create_dir(&outside).unwrap();
    let target = outside.to_str().unwrap().to_string();
    let layer = raw_tar(&[
        ("escape", T::Symlink, &target, b""),
        ("escape/pwned", T::Regular, "", b"x"),
        ("up", T::Symlink, "/", b""),
        ("up/etc/", T::Directory, "", b""),
    ]);
    apply_layer(&root, &layer[..], None).unwrap();
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "the host directory is untouched"
    );
    let inside = root.join(target.trim_start_matches('/')).join("pwned");
    assert!(
        inside.exists(),
        "the write was clamped to the rootfs: {}",
        inside.display()
    );
    assert!(root.join("etc").is_dir());
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn diff_id_is_checked() {
    let (base, root) = sandbox();
    let layer = raw_tar(&[("f", T::Regular, "", b"x")]);
    let good = format!("sha256:{}", hex(&Sha256::digest(&layer)));
    apply_layer(&root, &layer[..], Some(&good)).unwrap();
    let bad = format!("sha256:{}", "0".repeat(64));
    assert!(matches!(
        apply_layer(&root, &layer[..], Some(&bad)),
        Err(ExtractError::DiffId { .. })
    ));
    fs::remove_dir_all(base).unwrap();
}
