//! A bounded, deterministic, structure-aware fuzz of manifest parsing and validation, as the
//! directory and the URL source run it: YAML and JSON, Pod and PodList, every field of real
//! manifests replaced by values of odd types, byte-level mutations, and hand-made hostile
//! inputs (deep nesting, wide lists, huge scalars, alias bombs, invalid UTF-8, tags, many
//! documents).
//!
//! For every input: no panic, at most a few seconds and a bounded amount of memory (counted
//! by this binary's allocator, per thread), and an error names the file it is about.

use serde_json::{json, Value};
use staticlet::manifest::{self, validate, Source};
use staticlet::source::body::parse_body;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Counts this thread's live heap bytes and their peak (tests run on threads of their own).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + delta;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            account(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        account(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            account(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Most heap one input may use at its peak, beyond the input itself.
const MAX_PEAK: isize = 96 << 20;
/// Most time one input may take (debug build, on a loaded machine; before the bounds, the
/// deep inputs took minutes).
const MAX_TIME: Duration = Duration::from_secs(10);
const FILE: &str = "/fuzz/manifests/pod.yaml";
const URL: &str = "https://fuzz.example/pods";
const NODE: &str = "node1";

/// A small deterministic PRNG (xorshift), so every run tries the same inputs.
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

/// Runs one input through everything a source does with it and checks the outcome.
fn check(what: &str, input: &[u8]) -> Duration {
    let start_live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start_live));
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let source = Source::File(PathBuf::from(FILE));
        let (result, _unknown) = manifest::load_checked(input, &source, NODE);
        match result {
            Ok(pod) => {
                // Whatever passes validation is safe to build paths and log lines from.
                assert!(validate::is_dns1123_subdomain(pod.name()), "{what}");
                let spec = &pod.pod.spec;
                for c in spec.containers.iter().chain(&spec.init_containers) {
                    assert!(validate::is_dns1123_label(&c.name), "{what}");
                }
            }
            Err(e) => {
                assert!(!e.errors.is_empty(), "{what}: an error without a reason");
                for line in e.to_string().lines() {
                    assert!(
                        line.starts_with(&format!("{FILE}: ")),
                        "{what}: the error does not name the file: {line:?}"
                    );
                }
            }
        }
        if let Ok(items) = parse_body(input, URL, NODE) {
            for (entry, _) in items {
                if let Err(e) = entry.result {
                    for line in e.to_string().lines() {
                        assert!(line.starts_with(URL), "{what}: {line:?}");
                    }
                }
            }
        }
    }));
    let took = started.elapsed();
    let peak = PEAK.with(Cell::get) - start_live;
    if let Err(panic) = outcome {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let shown: String = String::from_utf8_lossy(input).chars().take(300).collect();
        panic!("{what}: panicked ({msg}) on input {shown:?}");
    }
    assert!(took < MAX_TIME, "{what}: took {took:?}");
    assert!(peak < MAX_PEAK, "{what}: peak heap {} MB", peak >> 20);
    took
}

fn corpus() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/valid");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = fs::read_to_string(p).unwrap();
            let v = manifest::decode(text.as_bytes()).unwrap();
            (p.file_name().unwrap().to_string_lossy().to_string(), v)
        })
        .collect()
}

/// Every path to a node of `v` (object keys and list indexes).
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                at.push(json!(k));
                paths(c, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, c) in items.iter().enumerate() {
                at.push(json!(i));
                paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn replace(v: &mut Value, path: &[Value], with: Value) {
    let mut cur = v;
    for seg in path {
        cur = match (seg, cur) {
            (Value::String(k), Value::Object(m)) => m.get_mut(k.as_str()).unwrap(),
            (Value::Number(i), Value::Array(a)) => &mut a[i.as_u64().unwrap() as usize],
            _ => unreachable!(),
        };
    }
    *cur = with;
}

/// Values of every type a field might wrongly hold.
fn odd_values() -> Vec<Value> {
    let mut deep = json!("bottom");
    for _ in 0..40 {
        deep = json!({ "x": [deep] });
    }
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1e308),
        json!(-0.5),
        json!(""),
        json!("x\n2026-01-01T00:00:00Z INFO  forged: started\u{1b}[2J"),
        json!("../../../../etc/passwd"),
        json!("1e999999999"),
        json!("9999999999999999999999Ei"),
        json!("\u{0}\u{202e}ünïcødé"),
        json!("a".repeat(70_000)),
        json!([]),
        json!([1, "two", null, {"three": [3]}]),
        json!({}),
        json!({"": "", "a b": 1, "\n": [null]}),
        deep,
    ]
}

/// Serialises as JSON or YAML, at random.
fn render(rng: &mut Rng, v: &Value) -> Vec<u8> {
    match rng.below(3) {
        0 => serde_json::to_vec(v).unwrap(),
        1 => serde_json::to_vec_pretty(v).unwrap(),
        _ => serde_yaml::to_string(v).unwrap().into_bytes(),
    }
}

#[test]
fn odd_values_in_every_field_of_real_manifests() {
    let mut rng = Rng(0x5eed_0001);
    let odd = odd_values();
    let started = Instant::now();
    let mut n = 0;
    for (name, pod) in corpus() {
        let mut all = Vec::new();
        paths(&pod, &mut Vec::new(), &mut all);
        for path in &all {
            // Every field, with one odd value each time (a different one per field).
            let with = odd[rng.below(odd.len())].clone();
            let mut v = pod.clone();
            replace(&mut v, path, with);
            let bytes = render(&mut rng, &v);
            check(&format!("{name} {path:?}"), &bytes);
            // The same pod inside a PodList, as a URL serves it.
            if rng.below(4) == 0 {
                let list = json!({"apiVersion": "v1", "kind": "PodList", "items": [v, pod]});
                check(
                    &format!("{name} in a list {path:?}"),
                    &render(&mut rng, &list),
                );
            }
            n += 1;
        }
    }
    assert!(n > 500, "{n} inputs");
    eprintln!("{n} structure-aware inputs in {:?}", started.elapsed());
}

/// Flipped bytes, truncations, repeated and dropped pieces, YAML tokens dropped in.
fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            break;
        }
        let i = rng.below(b.len());
        match rng.below(7) {
            0 => b[i] = rng.next() as u8,
            1 => b.truncate(i),
            2 => {
                let j = (i + rng.below(40)).min(b.len());
                let piece = b[i..j].to_vec();
                b.splice(i..i, piece);
            }
            3 => {
                b.remove(i);
            }
            4 => {
                let tokens: [&[u8]; 14] = [
                    b"[",
                    b"]",
                    b"{",
                    b"}",
                    b": ",
                    b"\n  - ",
                    b"- name: x\n",
                    b"\t",
                    b"&a ",
                    b"*a",
                    b"<<: *a\n",
                    b"!!binary ",
                    b"? ",
                    b"\n---\n",
                ];
                let t = tokens[rng.below(tokens.len())];
                b.splice(i..i, t.iter().copied());
            }
            5 => {
                b.splice(i..i, [0xc3u8, 0x28, 0xed, 0xa0, 0x80, 0xff]);
            }
            _ => b[i] = b"0123456789-./:'\"#\\"[rng.below(18)],
        }
    }
    b
}

#[test]
fn mutated_bytes_of_real_manifests() {
    let seeds: Vec<Vec<u8>> = corpus()
        .iter()
        .flat_map(|(_, v)| {
            [
                serde_yaml::to_string(v).unwrap().into_bytes(),
                serde_json::to_vec(v).unwrap(),
            ]
        })
        .collect();
    let mut rng = Rng(0x5eed_0002);
    let started = Instant::now();
    for i in 0..3000 {
        let input = mutate(&mut rng, &seeds[i % seeds.len()]);
        check(&format!("mutation {i}"), &input);
    }
    eprintln!("3000 mutations in {:?}", started.elapsed());
}

fn repeat(piece: &str, n: usize) -> String {
    piece.repeat(n)
}

/// Inputs built to hurt the parser, each near the 10 MB cap where size matters.
fn hostile() -> Vec<(&'static str, Vec<u8>)> {
    let n = 5_000_000;
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: busybox}]\n";
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (i, c) in "bcdefghijklm".chars().enumerate() {
        let prev = (b'a' + i as u8) as char;
        laughs.push_str(&format!(
            "{c}: &{c} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
    }
    let mut laughs_map = String::from("a: &a {k0: v, k1: v, k2: v, k3: v}\n");
    for (i, c) in "bcdefghijklmnop".chars().enumerate() {
        let prev = (b'a' + i as u8) as char;
        laughs_map.push_str(&format!(
            "{c}: &{c} {{x: *{prev}, y: *{prev}, z: *{prev}}}\n"
        ));
    }
    let garbage: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    vec![
        ("deep flow YAML", format!("a: {}{}", repeat("[", n), repeat("]", n)).into_bytes()),
        ("deep flow mapping", format!("{}{}", repeat("{a: ", n / 4), repeat("}", n / 4)).into_bytes()),
        ("deep block YAML", (0..3000).map(|i| format!("{}- a:\n", " ".repeat(i))).collect::<String>().into_bytes()),
        ("deep JSON", format!("{}1{}", repeat("{\"a\":[", n / 6), repeat("]}", n / 6)).into_bytes()),
        ("unclosed deep JSON", repeat("[", 9_000_000).into_bytes()),
        ("wide YAML list", format!("[{}1]", repeat("1,", n - 1)).into_bytes()),
        ("wide block list", repeat("- 1\n", 2_500_000).into_bytes()),
        ("wide JSON list", format!("{{\"a\":[{}1]}}", repeat("1,", n - 1)).into_bytes()),
        ("wide mapping", (0..400_000).map(|i| format!("k{i}: v\n")).collect::<String>().into_bytes()),
        ("billion laughs", laughs.into_bytes()),
        ("billion laughs of maps", laughs_map.into_bytes()),
        ("alias inside its own anchor", b"a: &a [*a]\n".to_vec()),
        ("unknown alias", b"a: *nothing\n".to_vec()),
        ("merge key", format!("base: &b {{name: c, image: busybox}}\n{pod}  x: [{{<<: *b}}]\n").into_bytes()),
        ("huge YAML scalar", format!("{pod}  annotations: {{big: \"{}\"}}\n", repeat("x", 2_000_000)).into_bytes()),
        ("huge JSON scalar", format!("{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"p\",\"annotations\":{{\"a\":\"{}\"}}}}}}", repeat("y", 9_000_000)).into_bytes()),
        ("huge plain scalar", repeat("z", 3_000_000).into_bytes()),
        ("one byte too long", vec![b' '; manifest::MAX_MANIFEST_BYTES + 1]),
        ("binary garbage", garbage),
        ("invalid UTF-8 in a value", [&pod.as_bytes()[..40], &[0xff, 0xfe, 0xc0, 0x80][..], &pod.as_bytes()[40..]].concat()),
        ("UTF-16 BOM", [&[0xfe, 0xff][..], pod.as_bytes()].concat()),
        ("UTF-8 BOM", [&[0xef, 0xbb, 0xbf][..], pod.as_bytes()].concat()),
        ("NUL bytes", pod.replace("busybox", "busy\0box").into_bytes()),
        ("many documents", repeat("---\na: 1\n", 200_000).into_bytes()),
        ("many empty documents", repeat("---\n", 1_000_000).into_bytes()),
        ("tags", b"!!map {apiVersion: !!str v1, kind: !custom Pod, metadata: !!binary aGk=, spec: !!null ''}\n".to_vec()),
        ("complex keys", b"? [a, b]\n: c\n? {x: y}\n: d\n".to_vec()),
        ("odd numbers", b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {terminationGracePeriodSeconds: 1e999, containers: [{name: c, image: i, ports: [{containerPort: 0x50}, {containerPort: .inf}, {containerPort: -.nan}, {containerPort: 99999999999999999999999}]}]}\n".to_vec()),
        ("huge quantity", b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i, resources: {limits: {memory: 99999999999999999999999999Ei, cpu: 1e308}, requests: {memory: 0.000000000000000000000001n, cpu: '-1'}}}]}\n".to_vec()),
        ("PodList in a file", format!("apiVersion: v1\nkind: PodList\nitems:\n- {}\n", pod.replace('\n', "\n  ")).into_bytes()),
        ("PodList with odd items", br#"{"apiVersion":"v1","kind":"PodList","items":[1,"x",null,[],{}]}"#.to_vec()),
        ("PodList with items not a list", br#"{"apiVersion":"v1","kind":"PodList","items":{"a":1}}"#.to_vec()),
        ("duplicate keys", b"apiVersion: v1\napiVersion: v2\nkind: Pod\nkind: Pod\n".to_vec()),
    ]
}

#[test]
fn hostile_inputs_cost_bounded_time_and_memory() {
    let started = Instant::now();
    for (what, input) in hostile() {
        let took = check(what, &input);
        if took > Duration::from_millis(500) {
            eprintln!("{what}: {took:?}");
        }
    }
    eprintln!("hostile inputs in {:?}", started.elapsed());
}

#[test]
fn files_in_a_directory_are_named_in_their_errors() {
    // The same inputs through the directory source's reading path, as `run` reads them.
    let dir = std::env::temp_dir().join(format!("stl-fuzz-dir-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x5eed_0003);
    let seeds: Vec<Vec<u8>> = corpus()
        .iter()
        .map(|(_, v)| serde_yaml::to_string(v).unwrap().into_bytes())
        .collect();
    for i in 0..200 {
        let body = mutate(&mut rng, &seeds[i % seeds.len()]);
        fs::write(dir.join(format!("m{i:03}.yaml")), body).unwrap();
    }
    let mut src = staticlet::source::dir::DirSource::new(dir.clone(), NODE.into());
    src.relist(std::time::SystemTime::now() + Duration::from_secs(3600));
    let snap = src.snapshot();
    assert_eq!(snap.entries.len(), 200);
    for e in snap.entries {
        if let Err(err) = e.result {
            for line in err.to_string().lines() {
                assert!(
                    line.starts_with(&format!("{}: ", e.origin.display())),
                    "{line}"
                );
            }
        }
    }
    fs::remove_dir_all(dir).unwrap();
}
