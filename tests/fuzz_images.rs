//! A deterministic, bounded fuzz run over image metadata at import: the index, manifest and
//! config of a small OCI layout are mutated as JSON values (wrong types, missing and extra
//! keys, huge numbers, diff ID lists of the wrong length, indexes where manifests belong),
//! their digests kept consistent so that the parsers, not the digest checks, see the damage.
//! It asserts that nothing panics, that every error explains itself, and that the store stays
//! consistent: every listed image resolves and has its unpacked rootfs.

use crate::common;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use staticlet::image::{import, ImageStore, Reference};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn put(layout: &Path, bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

fn tiny_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "etc/", &[][..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(4);
    b.append_data(&mut h, "etc/hostname", &b"box\n"[..])
        .unwrap();
    b.into_inner().unwrap()
}

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => Value::Null,
        1 => json!(u64::MAX),
        2 => json!(-1),
        3 => json!(""),
        4 => json!("sha256:0000"),
        5 => json!([]),
        6 => json!({}),
        7 => json!("application/vnd.oci.image.index.v1+json"),
        _ => json!([{"digest": "sha256:1", "size": -5}]),
    }
}

/// One mutation somewhere inside `v`, up to `depth` levels down.
fn mutate(rng: &mut Rng, v: &mut Value, depth: usize) {
    if depth > 0 {
        let pick = rng.below(usize::MAX);
        match v {
            Value::Object(m) if !m.is_empty() => {
                let k = m.keys().nth(pick % m.len()).cloned().unwrap();
                return mutate(rng, m.get_mut(&k).unwrap(), depth - 1);
            }
            Value::Array(a) if !a.is_empty() => {
                let i = pick % a.len();
                return mutate(rng, &mut a[i], depth - 1);
            }
            _ => {}
        }
    }
    match (rng.below(4), &mut *v) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(rng.below(m.len())).cloned().unwrap();
            m.remove(&k);
        }
        (1, Value::Array(a)) if !a.is_empty() => {
            let first = a[0].clone();
            a.push(first);
        }
        (2, Value::Object(m)) => {
            m.insert("unexpected".into(), random_value(rng));
        }
        _ => *v = random_value(rng),
    }
}

#[test]
fn fuzzed_image_metadata_never_panics_and_never_lists_a_broken_image() {
    let base = common::unique_dir("fuzz-images");
    let layer = tiny_layer();
    let layer_hex: String = Sha256::digest(&layer)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let config = json!({"architecture": staticlet::image::host_platform().1, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]}});
    let store = ImageStore::open(&base.join("root")).unwrap();
    let mut rng = Rng(0x1dea_f00d_0077);
    let started = Instant::now();
    let (mut ok, mut refused) = (0, 0);
    for round in 0..300 {
        let layout = base.join(format!("layout{round}"));
        fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        let layer_digest = put(&layout, &layer);
        let mut config = config.clone();
        let target = rng.below(3);
        if target == 0 {
            let d = rng.below(4);
            mutate(&mut rng, &mut config, d);
        }
        let config_bytes = config.to_string().into_bytes();
        let config_digest = put(&layout, &config_bytes);
        let mut manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}]});
        if target == 1 {
            let d = rng.below(4);
            mutate(&mut rng, &mut manifest, d);
        }
        let manifest_bytes = manifest.to_string().into_bytes();
        let manifest_digest = put(&layout, &manifest_bytes);
        let mut index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_bytes.len()}]});
        if target == 2 {
            let d = rng.below(4);
            mutate(&mut rng, &mut index, d);
        }
        fs::write(layout.join("index.json"), index.to_string()).unwrap();
        let name = Reference::parse(&format!("localhost/fuzz:{round}")).unwrap();
        let result =
            std::panic::catch_unwind(|| import::import(&store, &layout, Some(&name), "now"));
        match result {
            Err(_) => panic!("round {round}: import panicked on {index} / {manifest} / {config}"),
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                refused += 1;
                assert!(!e.to_string().trim().is_empty(), "round {round}: {e:?}");
                assert!(
                    store.resolve(&name).unwrap().is_none(),
                    "round {round}: {e} but listed"
                );
            }
        }
        for (r, _) in store.refs().unwrap() {
            let image = store
                .resolve(&Reference::parse(&r).unwrap())
                .unwrap_or_else(|e| panic!("round {round}: listed {r} does not load: {e}"))
                .unwrap();
            assert!(
                store.rootfs(&image).unwrap().join("etc/hostname").is_file(),
                "round {round}"
            );
        }
        fs::remove_dir_all(&layout).unwrap();
    }
    eprintln!("{ok} imported, {refused} refused");
    assert!(ok > 30 && refused > 30, "{ok} ok, {refused} refused");
    assert!(started.elapsed() < Duration::from_secs(120));
    let _ = fs::remove_dir_all(base);
}
