//! A structure-aware, deterministic and bounded fuzz run over layer extraction: tar streams
//! built entry by entry from the shapes that hurt extractors (empty and opaque whiteouts,
//! `..`, absolute and very long names, PAX records and GNU long names, hard links to
//! symlinks, directories and missing targets, symlink chains and loops, sparse entries,
//! device nodes, duplicates), then truncated, corrupted or gzip-wrapped. Every run is the same
//! (a fixed seed) and lasts seconds. It asserts that nothing panics, that nothing outside the
//! rootfs changes (a sentinel directory with a file and a directory that absolute symlinks
//! aim at, whose contents, modes and times are checked after every round), and that every
//! error explains itself.

use staticlet::image::extract::{apply_layer, ExtractError};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tar::EntryType as T;

/// xorshift: the same faults on every run.
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
    fn pick<'a, X: ?Sized>(&mut self, xs: &[&'a X]) -> &'a X {
        xs[self.below(xs.len())]
    }
}

/// Everything observable about a host directory tree: names, modes, owners, times, contents.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = fs::symlink_metadata(&d).unwrap();
        out.insert(
            d.display().to_string(),
            (m.mode(), m.uid(), m.mtime(), Vec::new()),
        );
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                let body = if m.is_file() {
                    fs::read(e.path()).unwrap()
                } else {
                    Vec::new()
                };
                out.insert(
                    e.path().display().to_string(),
                    (m.mode(), m.uid(), m.mtime(), body),
                );
            }
        }
    }
    out
}

struct Gen<'a> {
    rng: Rng,
    sentinel: &'a str,
    /// How often each interesting shape was generated, to prove the run covers it.
    seen: BTreeMap<&'static str, u32>,
}

impl Gen<'_> {
    fn name(&mut self) -> String {
        let benign: &[&str] = &[
            "a",
            "a/b",
            "a/b/c",
            "l",
            "l/x",
            "l/x/y",
            "up",
            "up/etc",
            "h",
            "h2",
            "f",
            "d/",
            "./a/d",
            "a//b",
            ".wh.a",
            "a/.wh.b",
            "l/.wh.x",
            ".wh..wh..opq",
            "a/.wh..wh..opq",
            "l/.wh..wh..opq",
            ".wh..wh.plnk",
            "dev/console",
            "a/\u{e9}",
        ];
        let hostile: &[&str] = &[
            "..",
            "../x",
            "a/../../y",
            "/abs",
            ".wh.",
            "a/.wh.",
            ".wh...",
            ".wh..",
            "GNUSparseFile.0/a",
        ];
        let fixed = if self.rng.below(8) == 0 {
            hostile
        } else {
            benign
        };
        match self.rng.below(40) {
            0 => {
                *self.seen.entry("long name").or_default() += 1;
                "n".repeat(90 + self.rng.below(5000))
            }
            1 => {
                *self.seen.entry("deep name").or_default() += 1;
                let depth = if self.rng.below(8) == 0 { 600 } else { 60 };
                "d/".repeat(1 + self.rng.below(depth))
            }
            _ => {
                let n = self.rng.pick(fixed).to_string();
                if n.ends_with(".wh.") {
                    *self.seen.entry("empty whiteout").or_default() += 1;
                }
                n
            }
        }
    }

    fn target(&mut self) -> String {
        let s = self.sentinel;
        let fixed = [
            "a".to_string(),
            "../..".into(),
            "/".into(),
            "/etc".into(),
            "a/b".into(),
            "l".into(),
            "missing".into(),
            "h".into(),
            "a/../..".into(),
            "../sentinel/file".into(),
            s.to_string(),
            format!("{s}/file"),
            format!("{s}/dir"),
            "l/x".into(),
            "f".into(),
            "d".into(),
        ];
        if self.rng.below(30) == 0 {
            return "t/".repeat(1 + self.rng.below(3000));
        }
        fixed[self.rng.below(fixed.len())].clone()
    }

    /// One archive entry (with its extension headers) appended to `b`.
    fn entry(&mut self, b: &mut tar::Builder<Vec<u8>>) {
        let name = self.name();
        let link = self.target();
        let kinds = [
            T::Regular,
            T::Directory,
            T::Symlink,
            T::Link,
            T::Char,
            T::Block,
            T::Fifo,
            T::GNUSparse,
            T::Continuous,
            T::XGlobalHeader,
            T::new(b'Z'),
        ];
        // Mostly the common kinds, so that many layers apply and later ones build on them.
        let kind = match self.rng.below(3) {
            0 => kinds[self.rng.below(kinds.len())],
            _ => kinds[self.rng.below(4)],
        };
        let modes = [0o644, 0o755, 0o6777, 0o000, 0o1777, 0o777];
        if self.rng.below(15) == 0 {
            *self.seen.entry("pax records").or_default() += 1;
            let records: &[(&str, &[u8])] = match self.rng.below(4) {
                0 => &[("path", b"a/.wh.")],
                1 => &[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")],
                2 => &[("linkpath", b"/"), ("uid", b"4294967296")],
                _ => &[("SCHILY.xattr.user.x", b"y"), ("mtime", b"-1.5")],
            };
            b.append_pax_extensions(records.iter().copied()).unwrap();
        }
        let long = |b: &mut tar::Builder<Vec<u8>>, kind: u8, text: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(T::new(kind));
            h.set_size(text.len() as u64 + 1);
            h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            h.set_cksum();
            let mut data = text.as_bytes().to_vec();
            data.push(0);
            b.append(&h, &data[..]).unwrap();
        };
        if name.len() > 100 {
            long(b, b'L', &name);
        }
        if link.len() > 100 && matches!(kind, T::Symlink | T::Link) {
            long(b, b'K', &link);
        }
        let data: Vec<u8> = match kind {
            T::Regular | T::Continuous => b"data".to_vec(),
            T::GNUSparse => vec![b's'; 512],
            _ => Vec::new(),
        };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(modes[self.rng.below(modes.len())]);
        h.set_size(data.len() as u64);
        h.set_mtime(self.rng.next() % 2_000_000_000);
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let l = link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&link.as_bytes()[..l]);
        if kind == T::GNUSparse {
            *self.seen.entry("gnu sparse").or_default() += 1;
            let gnu = h.as_gnu_mut().unwrap();
            let hole = (self.rng.below(4) as u64) << 14;
            gnu.sparse[0].set_offset(hole);
            gnu.sparse[0].set_length(512);
            gnu.set_real_size(hole + 512 + self.rng.below(2) as u64);
        }
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }

    /// A whole layer: entries, then maybe a duplicate, a truncation, corruption or gzip.
    fn layer(&mut self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for _ in 0..1 + self.rng.below(10) {
            self.entry(&mut b);
        }
        let mut bytes = b.into_inner().unwrap();
        match self.rng.below(8) {
            0 => {
                *self.seen.entry("truncated").or_default() += 1;
                let at = self.rng.below(bytes.len());
                bytes.truncate(at);
            }
            1 => {
                *self.seen.entry("corrupted").or_default() += 1;
                for _ in 0..1 + self.rng.below(8) {
                    let i = self.rng.below(bytes.len());
                    bytes[i] = self.rng.next() as u8;
                }
            }
            2 => {
                *self.seen.entry("gzip").or_default() += 1;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&bytes).unwrap();
                bytes = gz.finish().unwrap();
            }
            3 => {
                *self.seen.entry("gzip garbage").or_default() += 1;
                let mut junk = vec![0x1f, 0x8b, 8, 0];
                junk.extend((0..self.rng.below(2000)).map(|_| self.rng.next() as u8));
                bytes = junk;
            }
            _ => {}
        }
        bytes
    }
}

const ROUNDS: u32 = 600;

#[test]
fn fuzzed_layers_never_panic_never_touch_the_host_and_fail_cleanly() {
    let base = std::env::temp_dir().join(format!("stl-fuzz-layers-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let sentinel = base.join("sentinel");
    fs::create_dir_all(sentinel.join("dir")).unwrap();
    fs::write(sentinel.join("file"), "keep").unwrap();
    fs::write(sentinel.join("dir/inner"), "keep").unwrap();
    let before = snapshot(&sentinel);
    let sentinel_text = sentinel.display().to_string();
    let mut gen = Gen {
        rng: Rng(0x5eed_1a7e_2026),
        sentinel: &sentinel_text,
        seen: BTreeMap::new(),
    };
    let started = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    let mut round = 0;
    while round < ROUNDS {
        let root = base.join("rootfs");
        fs::create_dir_all(&root).unwrap();
        for _ in 0..1 + gen.rng.below(3) {
            let layer = gen.layer();
            let result = std::panic::catch_unwind(|| {
                let reader = staticlet::image::extract::decompress(&layer[..]).unwrap();
                apply_layer(&root, reader, None)
            });
            match result {
                Err(_) => panic!("round {round}: the extractor panicked on {layer:?}"),
                Ok(Ok(_)) => ok += 1,
                Ok(Err(e)) => {
                    failed += 1;
                    let text = e.to_string();
                    assert!(!text.trim().is_empty(), "round {round}: {e:?}");
                    if let ExtractError::Refused { entry, reason } = &e {
                        assert!(
                            !reason.is_empty() && text.contains(&format!("{entry:?}")),
                            "{e:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            snapshot(&sentinel),
            before,
            "round {round}: the host directory changed"
        );
        assert!(!base.join("x").exists() && !base.join("y").exists());
        assert!(!Path::new("/abs").exists());
        fs::remove_dir_all(&root).unwrap();
        round += 1;
    }
    fs::remove_dir_all(&base).unwrap();
    eprintln!(
        "{round} rounds, {ok} layers applied, {failed} refused: {:?}",
        gen.seen
    );
    // Bounded for the suite: about 5 s here; the bound is generous for loaded CI machines.
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    assert!(ok > 50 && failed > 50, "{ok} ok, {failed} refused");
    for shape in [
        "empty whiteout",
        "long name",
        "deep name",
        "pax records",
        "gnu sparse",
        "truncated",
        "corrupted",
        "gzip",
        "gzip garbage",
    ] {
        assert!(
            gen.seen.get(shape).copied().unwrap_or(0) > 5,
            "{shape} was not exercised"
        );
    }
}
