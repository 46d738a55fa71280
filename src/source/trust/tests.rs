//! Vectors made with the real `minisign` 0.11 (Debian): two keys, one signature by the first.

use super::*;

const KEY_A: &str = "untrusted comment: minisign public key 67E071EBF95C86FA\nRWT6hlz563HgZyb08UCeLo9eiRGamr+IaxIFvt/R+55QLFLnj1zxyx2a\n";
const KEY_B: &str = "untrusted comment: minisign public key 61467826939A5869\nRWRpWJqTJnhGYcegCojnGb/IFlhxNaw9q+UNAILP8Ykm1kAidul/ABlA\n";
const BODY: &[u8] = b"apiVersion: v1\nkind: Pod\nmetadata: {name: signed}\n";
const SIG_BY_A: &str = "untrusted comment: signature from minisign secret key\nRUT6hlz563HgZyXvRdro23W+RzG0sagkg9jVLa0YK1HlWJVjMxdCqOCLhMDjY0MiNs11oUQTdTF2Qh686k/4n2FX2vreWD1zLAw=\ntrusted comment: timestamp:1795944446\tfile:body.yaml\thashed\n1jtgZtVTb+2IdQ/Q+X5JLrXj8m2DmJ630srJWreROD/gKeinP4pe0UMNcWR4Ekf3hbPJ1j5r7kDZRVlBP6QEBw==\n";

fn trust(keys: &[&str]) -> Trust {
    let dir = std::env::temp_dir().join(format!("stl-trust-{}-{}", std::process::id(), keys.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let p = dir.join(format!("k{i}.pub"));
            std::fs::write(&p, k).unwrap();
            p
        })
        .collect();
    Trust::load(&files).unwrap().unwrap()
}

#[test]
fn a_pinned_key_verifies_and_rotation_keeps_both() {
    let t = trust(&[KEY_B, KEY_A]);
    let by = t.verify(BODY, Some(SIG_BY_A.as_bytes()), "m.yaml").unwrap();
    assert!(by.ends_with("k1.pub"), "{}", by.display());
}

#[test]
fn unsigned_tampered_and_unknown_keys_are_refused_and_counted() {
    let before = refused_total();
    let t = trust(&[KEY_A]);
    let e = t.verify(BODY, None, "m.yaml").unwrap_err().to_string();
    assert!(e.contains("not signed: m.yaml.minisig is missing"), "{e}");
    let mut tampered = BODY.to_vec();
    tampered[0] ^= 1;
    let e = t
        .verify(&tampered, Some(SIG_BY_A.as_bytes()), "m.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match the manifest"), "{e}");
    let e = trust(&[KEY_B])
        .verify(BODY, Some(SIG_BY_A.as_bytes()), "m.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not pinned"), "{e}");
    let e = t
        .verify(BODY, Some(b"garbage"), "m.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a minisign signature"), "{e}");
    assert!(refused_total() >= before + 4);
}

#[test]
fn key_files_that_are_not_keys_are_refused_by_name() {
    let p = std::env::temp_dir().join(format!("stl-trust-bad-{}.pub", std::process::id()));
    std::fs::write(&p, "not a key\n").unwrap();
    let e = Trust::load(std::slice::from_ref(&p))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&p.display().to_string()) && e.contains("not a minisign public key"),
        "{e}"
    );
    assert!(Trust::load(&[]).unwrap().is_none());
}
