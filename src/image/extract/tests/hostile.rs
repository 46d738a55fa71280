//! Layers written as an attacker would: symlinks and hard links aimed at the host, empty
//! whiteouts, oversized extended headers, sparse files, device nodes and very deep trees.

use super::{raw_tar, sandbox, tree};
use crate::image::extract::*;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use tar::EntryType as T;

/// One entry with a mode, its name and link written raw (no checks by the tar crate).
fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: T, link: &str, data: &[u8], mode: u32) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    let raw = h.as_old_mut();
    raw.name[..name.len()].copy_from_slice(name.as_bytes());
    raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn a_hard_link_to_a_host_symlink_never_changes_the_host_file() {
    let (base, root) = sandbox();
    let host_file = base.join("host-file");
    fs::write(&host_file, b"host").unwrap();
    fs::set_permissions(&host_file, fs::Permissions::from_mode(0o644)).unwrap();
    let host_dir = base.join("host-dir");
    fs::create_dir(&host_dir).unwrap();
    fs::set_permissions(&host_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let before = (
        fs::metadata(&host_file).unwrap().mode(),
        fs::metadata(&host_dir).unwrap().mode(),
        fs::metadata(&host_file).unwrap().mtime(),
    );
    let mut b = tar::Builder::new(Vec::new());
    entry(
        &mut b,
        "evil",
        T::Symlink,
        host_file.to_str().unwrap(),
        b"",
        0o777,
    );
    entry(&mut b, "hl", T::Link, "evil", b"", 0o6777);
    entry(
        &mut b,
        "evildir",
        T::Symlink,
        host_dir.to_str().unwrap(),
        b"",
        0o777,
    );
    entry(&mut b, "hl2", T::Link, "evildir", b"", 0o1777);
    let layer = b.into_inner().unwrap();
    let result = apply_layer(&root, &layer[..], None);
    assert!(result.is_ok(), "{result:?}");
    let after = (
        fs::metadata(&host_file).unwrap().mode(),
        fs::metadata(&host_dir).unwrap().mode(),
        fs::metadata(&host_file).unwrap().mtime(),
    );
    assert_eq!(
        after, before,
        "the host file and directory keep their mode and time"
    );
    assert_eq!(fs::read(&host_file).unwrap(), b"host");
    assert!(fs::symlink_metadata(root.join("hl"))
        .unwrap()
        .file_type()
        .is_symlink());
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn empty_and_dot_whiteouts_are_refused_without_a_panic() {
    for name in [".wh.", "a/.wh.", ".wh...", "a/.wh..", ".wh.."] {
        let (base, root) = sandbox();
        fs::create_dir(root.join("a")).unwrap();
        fs::write(base.join("outside"), b"keep").unwrap();
        let before = tree(&base);
        let layer = raw_tar(&[(name, T::Regular, "", b"")]);
        let result = apply_layer(&root, &layer[..], None);
        assert!(
            matches!(result, Err(ExtractError::Refused { .. })),
            "{name}: {result:?}"
        );
        assert_eq!(tree(&base), before, "{name}");
        assert!(root.join("a").is_dir(), "{name}: nothing removed");
        fs::remove_dir_all(base).unwrap();
    }
}

#[test]
fn device_nodes_are_skipped_and_fifos_made() {
    let (base, root) = sandbox();
    let layer = raw_tar(&[
        ("dev/", T::Directory, "", b""),
        ("dev/console", T::Char, "", b""),
        ("dev/sda", T::Block, "", b""),
        ("run/", T::Directory, "", b""),
        ("run/initctl", T::Fifo, "", b""),
        ("etc/hostname", T::Regular, "", b"deb\n"),
    ]);
    apply_layer(&root, &layer[..], None).expect("an mmdebstrap-style layer unpacks");
    assert!(root.join("dev").is_dir());
    assert!(fs::symlink_metadata(root.join("dev/console")).is_err());
    assert!(fs::symlink_metadata(root.join("dev/sda")).is_err());
    let fifo = fs::symlink_metadata(root.join("run/initctl")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"deb\n");
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn gnu_sparse_files_are_expanded_with_their_holes() {
    let (base, root) = sandbox();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(T::GNUSparse);
    h.set_mode(0o644);
    h.set_size(1024);
    h.set_path("sparse.img").unwrap();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.sparse[0].set_offset(0);
    gnu.sparse[0].set_length(512);
    gnu.sparse[1].set_offset(8 << 20);
    gnu.sparse[1].set_length(512);
    gnu.set_real_size((8 << 20) + 512);
    h.set_cksum();
    let mut data = vec![b'a'; 512];
    data.extend(vec![b'b'; 512]);
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &data[..]).unwrap();
    let layer = b.into_inner().unwrap();
    apply_layer(&root, &layer[..], None).expect("GNU sparse files are supported");
    let content = fs::read(root.join("sparse.img")).unwrap();
    assert_eq!(content.len(), (8 << 20) + 512);
    assert!(content[..512].iter().all(|b| *b == b'a'));
    assert!(content[512..8 << 20].iter().all(|b| *b == 0));
    assert!(content[8 << 20..].iter().all(|b| *b == b'b'));
    let blocks = fs::metadata(root.join("sparse.img")).unwrap().blocks();
    assert!(
        blocks * 512 < 1 << 20,
        "the hole stays a hole: {blocks} blocks"
    );
    assert!(!root.join("GNUSparseFile.0").exists());
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn pax_sparse_files_are_refused_by_name() {
    let (base, root) = sandbox();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("GNU.sparse.major", &b"1"[..]),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"disk.img"),
        ("GNU.sparse.realsize", b"4096"),
    ])
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(512);
    b.append_data(&mut h, "GNUSparseFile.0/disk.img", &[b'1'; 512][..])
        .unwrap();
    let layer = b.into_inner().unwrap();
    let err = apply_layer(&root, &layer[..], None).unwrap_err();
    assert!(err.to_string().contains("sparse"), "{err}");
    assert!(!root.join("GNUSparseFile.0").exists());
    fs::remove_dir_all(base).unwrap();
}

/// A tar stream made on the fly: one extension entry (`kind`) whose header claims `claimed`
/// bytes, and as many bytes of records as are read; counts what the extractor consumed.
struct Endless {
    header: Vec<u8>,
    sent: u64,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(64 * 1024);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let pos = self.sent as usize + i;
            *b = self.header.get(pos).copied().unwrap_or(b'a');
        }
        self.sent += n as u64;
        Ok(n)
    }
}

#[test]
fn oversized_extended_headers_are_refused_without_buffering_them() {
    for kind in [T::XHeader, T::GNULongName, T::GNULongLink] {
        let (base, root) = sandbox();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_path("././@LongLink").unwrap();
        h.set_size(512 << 20);
        h.set_cksum();
        let mut stream = Endless {
            header: h.as_bytes().to_vec(),
            sent: 0,
        };
        let result = apply_layer(&root, &mut stream, None);
        assert!(
            matches!(result, Err(ExtractError::Headers { .. })),
            "{kind:?}: {result:?}"
        );
        assert!(
            stream.sent < 4 << 20,
            "{kind:?}: only about the limit was read, not {} bytes",
            stream.sent
        );
        fs::remove_dir_all(base).unwrap();
    }
}

#[test]
fn a_deep_tree_unpacks_with_one_lookup_per_entry() {
    let (base, root) = sandbox();
    let depth = 500;
    let mut b = tar::Builder::new(Vec::new());
    let mut path = String::new();
    for _ in 0..depth {
        path.push_str("d/");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(T::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &path, &[][..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(1);
        b.append_data(&mut h, format!("{path}f"), &b"x"[..])
            .unwrap();
    }
    let layer = b.into_inner().unwrap();
    let started = std::time::Instant::now();
    let applied = apply_layer(&root, &layer[..], None).unwrap();
    assert_eq!(applied.entries, 2 * depth as u64);
    assert!(
        applied.lookups <= 2 * applied.entries,
        "unpacking is linear: {applied:?}"
    );
    // Generous: the path-by-path resolution it replaces took minutes here.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(root.join(&path).join("f").is_file());
    // One level more than allowed is refused by name.
    let too_deep = format!("{path}d/d/d/d/d/d/d/d/d/d/d/d/d/d/f");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    b.append_data(&mut h, &too_deep, &[][..]).unwrap();
    let layer = b.into_inner().unwrap();
    let err = apply_layer(&root, &layer[..], None).unwrap_err();
    assert!(err.to_string().contains("deeper than"), "{err}");
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn symlink_loops_and_links_to_missing_targets_fail_cleanly() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "loop",
            raw_tar(&[
                ("a", T::Symlink, "b", b""),
                ("b", T::Symlink, "a", b""),
                ("a/x", T::Regular, "", b"x"),
            ]),
        ),
        ("missing", raw_tar(&[("h", T::Link, "nothing", b"")])),
        (
            "to a dir",
            raw_tar(&[("d/", T::Directory, "", b""), ("h", T::Link, "d", b"")]),
        ),
        (
            "to itself",
            raw_tar(&[("h", T::Regular, "", b"x"), ("h", T::Link, "h", b"")]),
        ),
    ];
    for (what, layer) in cases {
        let (base, root) = sandbox();
        let before = tree(&base);
        let result = apply_layer(&root, &layer[..], None);
        assert!(result.is_err(), "{what}: {result:?}");
        assert_eq!(tree(&base), before, "{what}");
        fs::remove_dir_all(base).unwrap();
    }
}

#[test]
fn entries_skipped_with_data_do_not_count_as_headers() {
    let (base, root) = sandbox();
    fs::create_dir(root.join("a")).unwrap();
    let big = vec![b'z'; 3 << 20];
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, ".wh.a", T::Regular, "", &big, 0o644);
    entry(&mut b, "dev/console", T::Char, "", &big, 0o600);
    entry(&mut b, "after", T::Regular, "", b"ok", 0o644);
    let layer = b.into_inner().unwrap();
    apply_layer(&root, &layer[..], None).expect("data of skipped entries is not a header");
    assert!(!root.join("a").exists());
    assert_eq!(fs::read(root.join("after")).unwrap(), b"ok");
    fs::remove_dir_all(base).unwrap();
}
