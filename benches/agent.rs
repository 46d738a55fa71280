//! staticlet against bare crun, side by side on this machine (`tests/bench/run`; not part of
//! `cargo test`). Every figure is measured in one run, with the same busybox image and an
//! equivalent container on both sides, and reported as min/median/max over repetitions;
//! ratios (staticlet over crun, medians) cancel out most of the noise of a shared machine.
//!
//! "Running" means the container's own process has created its marker file `/m/<token>` in
//! a directory shared with the host (a hostPath volume for staticlet, a bind mount for bare
//! crun), seen through one inotify watch: the same detection on both sides.
//!
//! Usage (normally through tests/bench/run, as root):
//!   agent-<hash> [--target-dir DIR] [--bin PATH] [--out FILE] [--base DIR] [--reps N]
//!                [--cold-reps N] [--idle-secs S] [--agent-log LEVEL] [--quick]
//!                [--only start,edit,cold,net,idle,probe]
//!                [--compare-bin PATH] [--compare-env K=V,...]
//!   agent-<hash> --cleanup DIR     removes what an interrupted run left in DIR
//! `--compare-*` adds a second staticlet as one more interleaved side of the start, edit and
//! cold-start runs (its own root dir), to measure a change under the same noise.

// The tests' helpers (the image, what is on the host); the benchmark uses some of them.
#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "agent/network.rs"]
mod network;
#[path = "agent/sides.rs"]
mod sides;
#[path = "agent/sys.rs"]
mod sys;

use serde_json::{json, Map, Value};
use sides::{running, Agent, Bare, Bench};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sys::{Markers, R};

/// Pods in the cold-start test and in the idle/probe tests, as the issue asks.
const COLD_PODS: usize = 50;
const IDLE_PODS: usize = 20;
const SLEEP: &str = "sleep 1000000";

struct Opts {
    bin: PathBuf,
    target_dir: PathBuf,
    out: PathBuf,
    base: Option<PathBuf>,
    reps: usize,
    cold_reps: usize,
    idle_secs: u64,
    agent_log: Option<String>,
    cleanup: Option<PathBuf>,
    only: Option<Vec<String>>,
    /// A second staticlet (another binary, or the same with other environment variables)
    /// measured in the same interleaved start and edit runs: for trying a change.
    compare_bin: Option<PathBuf>,
    compare_env: Vec<(String, String)>,
    /// `--quick`: fewer repetitions, and no 200-pod round.
    quick: bool,
}

/// The keys bench.json always has (null when not measured).
const REQUIRED_KEYS: [&str; 15] = [
    "start_ratio",
    "net_start_ratio",
    "edit_ratio",
    "cold50_ratio",
    "delete50_ratio",
    "cold200_ratio",
    "agent_rss_kb",
    "monitor_rss_kb",
    "monitor_pss_kb",
    "agent_pss_kb",
    "stack_pss_kb",
    "idle_cpu_pct",
    "probe_cpu_pct",
    "binary_bytes",
    "binary_bytes_aarch64",
];

/// What `--only` can select (for profiling one figure at a time).
const SECTIONS: [&str; 6] = ["start", "edit", "cold", "net", "idle", "probe"];

impl Opts {
    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == section))
    }

    fn parse() -> R<Opts> {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let mut o = Opts {
            bin: target_dir.join("release/staticlet"),
            out: target_dir.join("bench.json"),
            target_dir,
            base: None,
            reps: 20,
            cold_reps: 5,
            idle_secs: 60,
            agent_log: None,
            cleanup: None,
            only: None,
            compare_bin: None,
            compare_env: Vec::new(),
            quick: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            let number = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
            match a.as_str() {
                "--bin" => o.bin = value(&a)?.into(),
                "--target-dir" => {
                    o.target_dir = value(&a)?.into();
                    o.bin = o.target_dir.join("release/staticlet");
                    o.out = o.target_dir.join("bench.json");
                }
                "--out" => o.out = value(&a)?.into(),
                "--base" => o.base = Some(value(&a)?.into()),
                "--reps" => o.reps = number(value(&a)?)? as usize,
                "--cold-reps" => o.cold_reps = number(value(&a)?)? as usize,
                "--idle-secs" => o.idle_secs = number(value(&a)?)?,
                "--agent-log" => o.agent_log = Some(value(&a)?),
                "--cleanup" => o.cleanup = Some(value(&a)?.into()),
                "--compare-bin" => o.compare_bin = Some(value(&a)?.into()),
                "--compare-env" => {
                    for kv in value(&a)?.split(',') {
                        let (k, v) = kv
                            .split_once('=')
                            .ok_or(format!("--compare-env: {kv} is not K=V"))?;
                        o.compare_env.push((k.into(), v.into()));
                    }
                }
                "--only" => {
                    let list: Vec<String> = value(&a)?.split(',').map(String::from).collect();
                    if let Some(bad) = list.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                        return Err(format!(
                            "--only: unknown section {bad} (sections: {})",
                            SECTIONS.join(",")
                        ));
                    }
                    o.only = Some(list);
                }
                "--quick" => {
                    o.quick = true;
                    o.reps = 3;
                    o.cold_reps = 1;
                    o.idle_secs = 10;
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        o.reps = o.reps.max(1);
        o.cold_reps = o.cold_reps.max(1);
        o.idle_secs = o.idle_secs.max(10);
        Ok(o)
    }
}

fn main() {
    // `cargo test --all-targets` runs this target with no arguments, `cargo bench` with only
    // `--bench` (and rebuilds target/release/staticlet in the bench profile first): neither
    // is the way to run the benchmark.
    if std::env::args().skip(1).all(|a| a == "--bench") {
        eprintln!("bench: not run here; the benchmark is tests/bench/run (see README, Benchmark)");
        return;
    }
    let o = match Opts::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    if let Some(dir) = &o.cleanup {
        sys::cleanup_all(dir);
        return;
    }
    sys::install_signal_handlers();
    let code = match run(&o) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench: FAILED: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn preflight(o: &Opts) -> R<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root: the benchmark starts real containers".into());
    }
    if !o.bin.is_file() {
        return Err(format!(
            "{} is missing: cargo build --release",
            o.bin.display()
        ));
    }
    for (what, ok) in [
        (
            "/bin/busybox (busybox-static)",
            Path::new("/bin/busybox").exists(),
        ),
        (
            "crun",
            std::process::Command::new("crun")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
        ),
        ("overlayfs", staticlet::sys::host::overlay_supported()),
    ] {
        if !ok {
            return Err(format!("{what} is missing (tests/setup-host installs it)"));
        }
    }
    Ok(())
}

fn run(o: &Opts) -> R<()> {
    preflight(o)?;
    let base = match &o.base {
        Some(b) => b.clone(),
        None => std::env::temp_dir().join(format!("stl-bench.{}", std::process::id())),
    };
    let load_before = loadavg();
    let began = Instant::now();
    let b = Bench::new(
        &base,
        &o.bin,
        o.agent_log.clone(),
        &o.target_dir.join("bench-logs"),
    )?;
    let mut r = Report::default();
    let layout = common::busybox_layout(&b.base);
    let lower = b.import_image(&b.root, &layout)?;
    let compare = (o.compare_bin.is_some() || !o.compare_env.is_empty()).then(|| {
        (
            o.compare_bin.clone().unwrap_or(o.bin.clone()),
            b.base.join("root-compare"),
        )
    });
    if let Some((_, root)) = &compare {
        b.import_image(root, &layout)?;
    }
    let mut m = Markers::new(&b.base.join("markers"))?;
    let net_list = network::setup(&b.base)?;
    eprintln!(
        "bench: {} ({} reps interleaved, {} cold rounds of {COLD_PODS} pods, {} s idle windows)",
        o.bin.display(),
        o.reps,
        o.cold_reps,
        o.idle_secs
    );

    // One agent for the start and edit tests; its first pod gives the bare-crun template.
    if o.wants("start") || o.wants("edit") || o.wants("cold") {
        let manifests = b.dir("manifests")?;
        let mut agent = Agent::spawn(&b, &manifests, "start-edit")?;
        agent.wait_healthy()?;
        sides::staticlet_start(&b, &mut m, &manifests, "warmup.yaml", "s-warmup", false)?;
        agent.wait_pods("the warm-up pod running", secs(30), |p| {
            p.len() == 1 && running(&p[0])
        })?;
        let bare = Bare::new(&b, &sides::staticlet_config(&b.root)?, &lower)?;
        remove(&manifests.join("warmup.yaml"))?;
        agent.wait_empty(secs(30))?;
        bare.prepare("warmup", &sides::container_cmd("c-warmup", SLEEP))?;
        bare.run("warmup")?;
        m.wait("c-warmup", secs(30))?;
        bare.remove("warmup");

        let mut other = None;
        if let Some((bin, root)) = &compare {
            if o.wants("start") || o.wants("edit") {
                let dir = b.dir("manifests-compare")?;
                let mut a = Agent::spawn_with(&b, root, bin, &o.compare_env, &dir, "compare")?;
                a.wait_healthy()?;
                other = Some((a, dir));
            }
        }
        let mut sides: Vec<(&Agent, &Path)> = vec![(&agent, &manifests)];
        if let Some((a, dir)) = &other {
            sides.push((a, dir));
        }
        let compare_label = compare.as_ref().map(|(bin, _)| {
            let env: Vec<String> = o
                .compare_env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("compare ({} {})", bin.display(), env.join(" "))
        });
        if o.wants("start") {
            eprintln!("bench: manifest -> running");
            let (s, c, cs) = start_test(o, &mut m, &b, &sides, &bare)?;
            r.pair(
                "start",
                "manifest written → running",
                &s[0],
                &c,
                "crun run -d → running",
                1.5,
            );
            r.row(
                "bare crun: crun create; crun start → running",
                Some("start_crun_create_start_ms"),
                "ms",
                &cs,
            );
            if let (Some(label), Some(s)) = (&compare_label, s.get(1)) {
                r.compare("start", label, s, &c);
            }
        }
        if o.wants("edit") {
            eprintln!("bench: manifest edited -> new container running");
            let (s, c) = edit_test(o, &mut m, &b, &sides, &bare)?;
            r.pair(
                "edit",
                "manifest edited → new container running",
                &s[0],
                &c,
                "crun delete -f old; crun run -d new → running",
                2.0,
            );
            if let (Some(label), Some(s)) = (&compare_label, s.get(1)) {
                r.compare("edit", label, s, &c);
            }
        }
        drop(sides);
        if let Some((mut a, _)) = other {
            a.stop();
        }
        agent.stop();
        drop(agent);

        if o.wants("cold") {
            eprintln!("bench: cold start and deletion of {COLD_PODS} pods");
            let cold = cold_test(
                o,
                &b,
                &mut m,
                &bare,
                compare.as_ref(),
                (COLD_PODS, o.cold_reps),
            )?;
            r.pair(
                "cold50",
                &format!("cold start, {COLD_PODS} pods from a directory"),
                &cold.start[0],
                &cold.bare_start,
                &format!("loop of {COLD_PODS} crun run -d → all running"),
                1.3,
            );
            r.pair(
                "delete50",
                &format!("{COLD_PODS} manifests removed → all pods gone (grace 0)"),
                &cold.delete[0],
                &cold.bare_delete,
                &format!("loop of {COLD_PODS} crun delete -f + bundle removal"),
                1.3,
            );
            if let (Some(label), Some(s)) = (&compare_label, cold.start.get(1)) {
                r.compare("cold50", label, s, &cold.bare_start);
            }
            if !o.quick {
                let big = COLD_PODS * 4;
                eprintln!("bench: cold start and deletion of {big} pods");
                let cold = cold_test(o, &b, &mut m, &bare, None, (big, o.cold_reps.min(2)))?;
                r.pair(
                    "cold200",
                    &format!("cold start, {big} pods from a directory"),
                    &cold.start[0],
                    &cold.bare_start,
                    &format!("loop of {big} crun run -d → all running"),
                    1.3,
                );
                r.pair(
                    "delete200",
                    &format!("{big} manifests removed → all pods gone (grace 0)"),
                    &cold.delete[0],
                    &cold.bare_delete,
                    &format!("loop of {big} crun delete -f + bundle removal"),
                    1.3,
                );
            }
        }
    }

    if o.wants("net") {
        eprintln!("bench: networked pod, manifest -> running");
        let (s, c) = network::start_test(o.reps, &b, &mut m, &lower, &net_list)?;
        r.pair(
            "net_start",
            "networked pod: manifest written → running",
            &s,
            &c,
            "netns + CNI ADD (same conflist) + crun run -d → running",
            1.5,
        );
    }

    if o.wants("idle") {
        eprintln!("bench: {IDLE_PODS} pods idle, {} s", o.idle_secs);
        let idle = idle_phase(o, &b, &mut m, false)?;
        r.memory(&idle, "idle", "");
        r.cpu(
            "idle_cpu_pct",
            "agent CPU, 20 pods idle, no probes",
            &idle,
            Some(0.1),
        );
        r.info_cpu("monitor_cpu_pct", "all 20 monitors' CPU, idle", &idle);
    }
    if o.wants("probe") {
        eprintln!(
            "bench: {IDLE_PODS} pods with an httpGet readiness probe every 10 s, {} s",
            o.idle_secs
        );
        let probe = idle_phase(o, &b, &mut m, true)?;
        r.memory(&probe, "probes", "probe_");
        r.cpu(
            "probe_cpu_pct",
            "agent CPU, 20 pods, httpGet probe every 10 s",
            &probe,
            None,
        );
    }

    r.binaries(o);
    let context = json!({
        "date": staticlet::sys::timefmt::now_rfc3339(),
        "binary": o.bin,
        "crun": crun_version(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "reps": o.reps,
        "cold_reps": o.cold_reps,
        "idle_secs": o.idle_secs,
        "duration_s": began.elapsed().as_secs(),
        "rootfs": "overlayfs over the same unpacked image on both sides",
    });
    drop(b);
    r.print(&context);
    r.write(&o.out, context)?;
    eprintln!("bench: wrote {}", o.out.display());
    Ok(())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn remove(p: &Path) -> R<()> {
    fs::remove_file(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Between repetitions: let the agent's background work end before the next clock starts.
fn settle() -> R<()> {
    sys::sleep(Duration::from_millis(150))
}

/// Per-agent start times, then bare `crun run -d`, then `crun create; crun start` (ms).
type StartSamples = (Vec<Vec<f64>>, Vec<f64>, Vec<f64>);

/// Manifest renamed into the watched directory → marker, against `crun run -d` → marker
/// (and, for the table, `crun create; crun start` → marker, which is how staticlet's monitor
/// starts a container). Interleaved, rotating which side goes first; repetition 0 is a
/// warm-up. `agents` is staticlet, and the `--compare-*` one when asked for.
fn start_test(
    o: &Opts,
    m: &mut Markers,
    b: &Bench,
    agents: &[(&Agent, &Path)],
    bare: &Bare,
) -> R<StartSamples> {
    let mut s = vec![Vec::new(); agents.len()];
    let (mut c, mut cs) = (Vec::new(), Vec::new());
    let n = agents.len() + 2;
    for i in 0..=o.reps {
        for side in 0..n {
            settle()?;
            match (side + i) % n {
                k if k < agents.len() => {
                    let (agent, dir) = agents[k];
                    let token = format!("s{k}-start-{i}");
                    let d = sides::staticlet_start(b, m, dir, "start.yaml", &token, false)?;
                    agent.wait_pods("the pod running", secs(30), |p| {
                        p.len() == 1 && running(&p[0])
                    })?;
                    remove(&dir.join("start.yaml"))?;
                    agent.wait_empty(secs(30))?;
                    if i > 0 {
                        s[k].push(ms(d));
                    }
                }
                k => {
                    let (id, token) = (format!("start-{i}-{k}"), format!("c-start-{i}-{k}"));
                    bare.prepare(&id, &sides::container_cmd(&token, SLEEP))?;
                    let t0 = Instant::now();
                    let run_d = k == agents.len();
                    if run_d {
                        bare.run(&id)?;
                    } else {
                        bare.create_start(&id)?;
                    }
                    let t1 = m.wait(&token, secs(30))?;
                    bare.remove(&id);
                    if i > 0 {
                        if run_d { &mut c } else { &mut cs }.push(ms(t1 - t0));
                    }
                }
            }
        }
    }
    Ok((s, c, cs))
}

/// A running pod's manifest replaced (new command, so a new pod UID; grace period 0) → the
/// new container's marker, against `crun delete --force old; crun run -d new` → marker.
fn edit_test(
    o: &Opts,
    m: &mut Markers,
    b: &Bench,
    agents: &[(&Agent, &Path)],
    bare: &Bare,
) -> R<(Vec<Vec<f64>>, Vec<f64>)> {
    let mut s = vec![Vec::new(); agents.len()];
    let mut c = Vec::new();
    let n = agents.len() + 1;
    for i in 0..=o.reps {
        for side in 0..n {
            settle()?;
            match (side + i) % n {
                k if k < agents.len() => {
                    let (agent, dir) = agents[k];
                    let one_running = |p: &[Value]| p.len() == 1 && running(&p[0]);
                    sides::staticlet_start(
                        b,
                        m,
                        dir,
                        "edit.yaml",
                        &format!("s{k}-edit-{i}a"),
                        false,
                    )?;
                    agent.wait_pods("the first version running", secs(30), one_running)?;
                    settle()?;
                    let token = format!("s{k}-edit-{i}b");
                    let d = sides::staticlet_start(b, m, dir, "edit.yaml", &token, false)?;
                    agent.wait_pods("the second version running", secs(30), one_running)?;
                    remove(&dir.join("edit.yaml"))?;
                    agent.wait_empty(secs(30))?;
                    if i > 0 {
                        s[k].push(ms(d));
                    }
                }
                _ => {
                    let (a, ta) = (format!("edit-{i}a"), format!("c-edit-{i}a"));
                    let (n, tn) = (format!("edit-{i}b"), format!("c-edit-{i}b"));
                    bare.prepare(&a, &sides::container_cmd(&ta, SLEEP))?;
                    bare.run(&a)?;
                    m.wait(&ta, secs(30))?;
                    bare.prepare(&n, &sides::container_cmd(&tn, SLEEP))?;
                    settle()?;
                    let t0 = Instant::now();
                    bare.delete(&a);
                    bare.run(&n)?;
                    let t1 = m.wait(&tn, secs(30))?;
                    bare.remove(&a);
                    bare.remove(&n);
                    if i > 0 {
                        c.push(ms(t1 - t0));
                    }
                }
            }
        }
    }
    Ok((s, c))
}

/// Times of one cold-start test: staticlet's sides and bare crun's, for the start and for the
/// deletion of every pod.
struct Cold {
    start: Vec<Vec<f64>>,
    bare_start: Vec<f64>,
    delete: Vec<Vec<f64>>,
    bare_delete: Vec<f64>,
}

/// An agent started on a directory holding `pods` manifests → all markers, against a loop of
/// `crun run -d` (bundles prepared beforehand) → all markers; then every manifest removed →
/// every pod gone (grace 0), against a loop of `crun delete -f` and bundle removals.
fn cold_test(
    o: &Opts,
    b: &Bench,
    m: &mut Markers,
    bare: &Bare,
    compare: Option<&(PathBuf, PathBuf)>,
    (pods, reps): (usize, usize),
) -> R<Cold> {
    let n_agents = 1 + usize::from(compare.is_some());
    let mut s = vec![Vec::new(); n_agents];
    let mut sd = vec![Vec::new(); n_agents];
    let mut c = Vec::new();
    let mut cd = Vec::new();
    let n = n_agents + 1;
    for r in 0..reps {
        for side in 0..n {
            settle()?;
            match (side + r) % n {
                k if k < n_agents => {
                    let dir = b.dir(&format!("cold{pods}-{r}-{k}"))?;
                    let tokens: Vec<String> =
                        (0..pods).map(|i| format!("s{k}-cold-{r}-{i}")).collect();
                    for (i, t) in tokens.iter().enumerate() {
                        let name = format!("cold-{i}");
                        b.write_manifest(
                            &dir,
                            &format!("{name}.yaml"),
                            &sides::pod_yaml(&name, t, &m.dir, false, true),
                        )?;
                    }
                    let tag = format!("cold{pods}-{r}-{k}");
                    let t0 = Instant::now();
                    let mut agent = match (k, compare) {
                        (1, Some((bin, root))) => {
                            Agent::spawn_with(b, root, bin, &o.compare_env, &dir, &tag)?
                        }
                        _ => Agent::spawn(b, &dir, &tag)?,
                    };
                    let times = m.wait_all(&tokens, secs(300))?;
                    let t1 = times.into_iter().max().expect("50 markers");
                    s[k].push(ms(t1 - t0));
                    agent.wait_healthy()?;
                    agent.wait_pods("all pods running", secs(60), |p| {
                        p.len() == pods && p.iter().all(running)
                    })?;
                    let d0 = Instant::now();
                    for i in 0..pods {
                        remove(&dir.join(format!("cold-{i}.yaml")))?;
                    }
                    agent.wait_empty(secs(600))?;
                    sd[k].push(ms(d0.elapsed()));
                    agent.stop();
                }
                _ => {
                    let ids: Vec<String> = (0..pods).map(|i| format!("cold-{r}-{i}")).collect();
                    let tokens: Vec<String> = ids.iter().map(|i| format!("c-{i}")).collect();
                    for (id, t) in ids.iter().zip(&tokens) {
                        bare.prepare(id, &sides::container_cmd(t, SLEEP))?;
                    }
                    settle()?;
                    let t0 = Instant::now();
                    for id in &ids {
                        bare.run(id)?;
                    }
                    let times = m.wait_all(&tokens, secs(300))?;
                    let t1 = times.into_iter().max().expect("50 markers");
                    c.push(ms(t1 - t0));
                    let d0 = Instant::now();
                    for id in &ids {
                        bare.remove(id);
                    }
                    cd.push(ms(d0.elapsed()));
                }
            }
        }
    }
    Ok(Cold {
        start: s,
        bare_start: c,
        delete: sd,
        bare_delete: cd,
    })
}

#[derive(Default)]
struct Idle {
    /// Agent CPU per slice of the window, in % of one core.
    slices: Vec<f64>,
    /// Agent CPU over the whole window, in % of one core.
    total: f64,
    monitors_total: f64,
    agent: [Vec<f64>; 3],
    /// Per monitor (mean over the 20), RSS/PSS/USS.
    mon_mean: [Vec<f64>; 3],
    /// All 20 monitors together, RSS/PSS/USS.
    mon_sum: [Vec<f64>; 3],
}

/// 20 pods (sleep, or busybox httpd with an httpGet readiness probe every 10 s) started by a
/// fresh agent, then left alone: agent CPU time (utime+stime) over the window in slices of
/// 10 s, agent and monitor RSS/PSS sampled at each slice boundary. Nothing talks to the agent
/// during the window.
fn idle_phase(o: &Opts, b: &Bench, m: &mut Markers, probe: bool) -> R<Idle> {
    let tag = if probe { "probe" } else { "idle" };
    let dir = b.dir(&format!("m-{tag}"))?;
    let tokens: Vec<String> = (0..IDLE_PODS).map(|i| format!("s-{tag}-{i}")).collect();
    for (i, t) in tokens.iter().enumerate() {
        let name = format!("{tag}-{i}");
        b.write_manifest(
            &dir,
            &format!("{name}.yaml"),
            &sides::pod_yaml(&name, t, &m.dir, probe, false),
        )?;
    }
    let mut agent = Agent::spawn(b, &dir, tag)?;
    agent.wait_healthy()?;
    m.wait_all(&tokens, secs(120))?;
    agent.wait_pods("20 pods running (and ready)", secs(60), |p| {
        p.len() == IDLE_PODS && p.iter().all(|p| running(p) && (!probe || sides::ready(p)))
    })?;
    // Let the start-up's short-lived threads and tasks finish.
    sys::sleep(secs(5))?;
    let monitors = sys::monitors(&b.root);
    if monitors.len() != IDLE_PODS {
        return Err(format!(
            "expected {IDLE_PODS} monitors, found {}",
            monitors.len()
        ));
    }
    let mut out = Idle::default();
    let sample_mem = |out: &mut Idle| -> R<()> {
        let a = sys::mem_kb(agent.pid).ok_or("the agent is gone")?;
        let mons: Vec<sys::Mem> = monitors.iter().filter_map(|p| sys::mem_kb(*p)).collect();
        if mons.len() != monitors.len() {
            return Err("a monitor ended during the idle window".into());
        }
        let n = mons.len() as f64;
        let sums = [
            mons.iter().map(|m| m.rss).sum::<u64>() as f64,
            mons.iter().map(|m| m.pss).sum::<u64>() as f64,
            mons.iter().map(|m| m.uss).sum::<u64>() as f64,
        ];
        for (i, v) in [a.rss, a.pss, a.uss].into_iter().enumerate() {
            out.agent[i].push(v as f64);
            out.mon_sum[i].push(sums[i]);
            out.mon_mean[i].push(sums[i] / n);
        }
        Ok(())
    };
    let mon_ticks = || -> u64 { monitors.iter().filter_map(|p| sys::cpu_ticks(*p)).sum() };
    let slices = (o.idle_secs / 10).max(1);
    let slice = Duration::from_secs_f64(o.idle_secs as f64 / slices as f64);
    let tck = sys::clk_tck();
    sample_mem(&mut out)?;
    let t0 = Instant::now();
    let c0 = sys::cpu_ticks(agent.pid).ok_or("the agent is gone")?;
    let m0 = mon_ticks();
    let (mut prev_t, mut prev_c) = (t0, c0);
    for k in 1..=slices {
        sys::sleep((t0 + slice * k as u32).saturating_duration_since(Instant::now()))?;
        let (t, cpu) = (
            Instant::now(),
            sys::cpu_ticks(agent.pid).ok_or("the agent is gone")?,
        );
        out.slices
            .push((cpu - prev_c) as f64 / tck / (t - prev_t).as_secs_f64() * 100.0);
        (prev_t, prev_c) = (t, cpu);
        sample_mem(&mut out)?;
    }
    let wall = (prev_t - t0).as_secs_f64();
    out.total = (prev_c - c0) as f64 / tck / wall * 100.0;
    out.monitors_total = (mon_ticks() - m0) as f64 / tck / wall * 100.0;
    for i in 0..IDLE_PODS {
        remove(&dir.join(format!("{tag}-{i}.yaml")))?;
    }
    agent.wait_empty(secs(120))?;
    agent.stop();
    Ok(out)
}

// ---- report -----------------------------------------------------------------------------

struct Row {
    label: String,
    key: Option<String>,
    unit: &'static str,
    samples: Vec<f64>,
    /// The figure itself (bench.json); for ratios the ratio of medians, for CPU the whole
    /// window.
    value: Option<f64>,
    target: Option<f64>,
    indent: bool,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    keys: Map<String, Value>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

impl Report {
    fn row(
        &mut self,
        label: &str,
        key: Option<&str>,
        unit: &'static str,
        samples: &[f64],
    ) -> &mut Row {
        self.rows.push(Row {
            label: label.into(),
            key: key.map(String::from),
            unit,
            samples: samples.to_vec(),
            value: Some(median(samples)),
            target: None,
            indent: false,
        });
        self.rows.last_mut().expect("just pushed")
    }

    /// staticlet's and crun's times, and the ratio of their medians (per-pair ratios give
    /// its spread).
    fn pair(&mut self, key: &str, s_label: &str, s: &[f64], c: &[f64], c_label: &str, limit: f64) {
        self.row(
            &format!("staticlet: {s_label}"),
            Some(&format!("{key}_staticlet_ms")),
            "ms",
            s,
        );
        self.row(
            &format!("bare crun: {c_label}"),
            Some(&format!("{key}_crun_ms")),
            "ms",
            c,
        );
        let pairs: Vec<f64> = s.iter().zip(c).map(|(a, b)| a / b).collect();
        let ratio = median(s) / median(c);
        let row = self.row(
            "ratio staticlet / crun (medians)",
            Some(&format!("{key}_ratio")),
            "×",
            &pairs,
        );
        row.value = Some(ratio);
        row.target = Some(limit);
        row.indent = true;
        self.keys
            .insert(format!("{key}_ratio"), json!(round(ratio, 3)));
    }

    /// The `--compare-*` staticlet's times and its ratio to the same crun samples.
    fn compare(&mut self, key: &str, label: &str, s: &[f64], c: &[f64]) {
        self.row(
            &format!("{label}: {key}"),
            Some(&format!("{key}_compare_ms")),
            "ms",
            s,
        );
        let pairs: Vec<f64> = s.iter().zip(c).map(|(a, b)| a / b).collect();
        let row = self.row(
            "ratio compare / crun (medians)",
            Some(&format!("{key}_compare_ratio")),
            "×",
            &pairs,
        );
        row.value = Some(median(s) / median(c));
        row.indent = true;
    }

    /// Agent and monitor memory; the targets apply to the idle case (`prefix` "").
    fn memory(&mut self, w: &Idle, what: &str, prefix: &str) {
        let n = IDLE_PODS;
        let targets = prefix.is_empty();
        for (i, kind) in ["RSS", "PSS", "USS"].iter().enumerate() {
            let key = format!("{prefix}agent_{}_kb", kind.to_lowercase());
            let row = self.row(
                &format!("agent {kind}, {n} pods, {what}"),
                Some(&key),
                "kB",
                &w.agent[i],
            );
            if i == 0 && targets {
                row.target = Some(8.0 * 1024.0);
            }
        }
        for (i, kind) in ["RSS", "PSS", "USS"].iter().enumerate() {
            let key = format!("{prefix}monitor_{}_kb", kind.to_lowercase());
            let row = self.row(
                &format!("monitor {kind}, per container (mean of {n})"),
                Some(&key),
                "kB",
                &w.mon_mean[i],
            );
            if i == 0 && targets {
                row.target = Some(1024.0);
            }
            if i == 1 && targets {
                row.target = Some(320.0);
            }
        }
        for (i, kind) in ["RSS", "PSS", "USS"].iter().enumerate() {
            let key = format!("{prefix}monitor_{}_sum_kb", kind.to_lowercase());
            self.row(
                &format!("monitor {kind}, sum of {n}"),
                Some(&key),
                "kB",
                &w.mon_sum[i],
            );
        }
        if targets {
            // The node's whole stack: the agent and every monitor, proportional shares.
            let stack: Vec<f64> = w.agent[1]
                .iter()
                .zip(&w.mon_sum[1])
                .map(|(a, m)| a + m)
                .collect();
            let row = self.row(
                &format!("agent + {n} monitors PSS (the node stack)"),
                Some("stack_pss_kb"),
                "kB",
                &stack,
            );
            row.target = Some(10.0 * 1024.0);
            for k in [
                "agent_rss_kb",
                "agent_pss_kb",
                "monitor_rss_kb",
                "monitor_pss_kb",
                "stack_pss_kb",
            ] {
                let v = self
                    .rows
                    .iter()
                    .find(|r| r.key.as_deref() == Some(k))
                    .and_then(|r| r.value);
                self.keys.insert(k.into(), json!(v.map(|v| round(v, 0))));
            }
        }
    }

    fn cpu(&mut self, key: &str, label: &str, w: &Idle, limit: Option<f64>) {
        let row = self.row(label, Some(key), "% core", &w.slices);
        row.value = Some(w.total);
        row.target = limit;
        self.keys.insert(key.into(), json!(round(w.total, 4)));
    }

    fn info_cpu(&mut self, key: &str, label: &str, w: &Idle) {
        self.row(label, Some(key), "% core", &[w.monitors_total]);
    }

    fn binaries(&mut self, o: &Opts) {
        let host = stripped_size(&o.bin, "strip");
        let arm = ["aarch64-unknown-linux-musl", "aarch64-unknown-linux-gnu"]
            .iter()
            .map(|t| o.target_dir.join(t).join("release/staticlet"))
            .find(|p| p.is_file());
        let arm_size = arm
            .as_ref()
            .and_then(|p| stripped_size(p, "aarch64-linux-gnu-strip"));
        if let Some(h) = host {
            self.row(
                "binary, stripped (host)",
                Some("binary_bytes"),
                "B",
                &[h as f64],
            );
        }
        match (&arm, arm_size) {
            (Some(p), Some(a)) => {
                let label = format!(
                    "binary, stripped ({})",
                    p.parent()
                        .and_then(|p| p.parent())
                        .and_then(|p| p.file_name())
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default()
                );
                self.row(&label, Some("binary_bytes_aarch64"), "B", &[a as f64]);
            }
            _ => {
                self.rows.push(Row {
                    label: "binary, stripped (aarch64): not built (cross/build)".into(),
                    key: Some("binary_bytes_aarch64".into()),
                    unit: "B",
                    samples: Vec::new(),
                    value: None,
                    target: None,
                    indent: false,
                });
            }
        }
        self.keys.insert("binary_bytes".into(), json!(host));
        self.keys
            .insert("binary_bytes_aarch64".into(), json!(arm_size));
    }

    fn print(&self, context: &Value) {
        println!();
        println!(
            "staticlet vs bare crun on this machine ({} CPUs, load {} → {}), {}",
            context["cpus"],
            context["loadavg_before"].as_str().unwrap_or("?"),
            context["loadavg_after"].as_str().unwrap_or("?"),
            context["crun"].as_str().unwrap_or("crun ?")
        );
        let (f, lo, mid, hi, n, v, t) = ("figure", "min", "median", "max", "n", "value", "target");
        println!("{f:<62} {lo:>10} {mid:>10} {hi:>10} {n:>4} {v:>10}  {t:<8} result");
        for r in &self.rows {
            let label = format!(
                "{}{} ({})",
                if r.indent { "  " } else { "" },
                r.label,
                r.unit
            );
            let f = |v: f64| fmt(v, r.unit);
            let (lo, mid, hi) = if r.samples.is_empty() {
                ("-".to_string(), "-".to_string(), "-".to_string())
            } else {
                (
                    f(min(&r.samples)),
                    f(median(&r.samples)),
                    f(max(&r.samples)),
                )
            };
            let value = r
                .value
                .filter(|v| v.is_finite())
                .map(f)
                .unwrap_or_else(|| "null".into());
            let (target, result) = match (r.target, r.value) {
                (Some(t), Some(v)) => (
                    format!("≤ {}", fmt(t, r.unit)),
                    if v <= t { "PASS" } else { "MISS" },
                ),
                _ => (String::new(), ""),
            };
            println!(
                "{label:<62} {lo:>10} {mid:>10} {hi:>10} {:>4} {value:>10}  {target:<8} {result}",
                r.samples.len()
            );
        }
        println!();
        println!("value: what bench.json records. Ratios: value is median(staticlet) / median(crun); min/median/max are");
        println!("the per-repetition ratios of interleaved pairs. CPU: value is the whole window; min/median/max are its");
        println!("10 s slices (clock-tick resolution: one tick in 10 s is 0.1 %). Memory: sampled every 10 s while idle.");
    }

    fn write(&self, out: &Path, context: Value) -> R<()> {
        let mut figures = Map::new();
        let mut targets = Map::new();
        for r in &self.rows {
            let Some(key) = &r.key else { continue };
            let finite = |v: f64| v.is_finite().then_some(round(v, 4));
            figures.insert(
                key.clone(),
                json!({
                    "label": r.label, "unit": r.unit,
                    "value": r.value.and_then(finite),
                    "min": finite(min(&r.samples)), "median": finite(median(&r.samples)),
                    "max": finite(max(&r.samples)), "n": r.samples.len(),
                    "samples": r.samples.iter().map(|v| round(*v, 4)).collect::<Vec<_>>(),
                }),
            );
            if let (Some(t), Some(v)) = (r.target, r.value) {
                targets.insert(key.clone(), json!({"limit": t, "met": v <= t}));
            }
        }
        let mut doc = self.keys.clone();
        for k in REQUIRED_KEYS {
            doc.entry(k).or_insert(Value::Null);
        }
        doc.insert("targets".into(), Value::Object(targets));
        doc.insert("figures".into(), Value::Object(figures));
        doc.insert("context".into(), context);
        if let Some(d) = out.parent() {
            let _ = fs::create_dir_all(d);
        }
        fs::write(
            out,
            serde_json::to_vec_pretty(&Value::Object(doc)).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", out.display()))
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{v:.1}"),
        "×" => format!("{v:.2}"),
        "% core" => format!("{v:.3}"),
        _ => format!("{v:.0}"),
    }
}

/// The size of a stripped copy (release builds are stripped already; this makes sure).
fn stripped_size(bin: &Path, strip: &str) -> Option<u64> {
    let copy = std::env::temp_dir().join(format!("stl-bench-strip-{}", std::process::id()));
    fs::copy(bin, &copy).ok()?;
    let _ = std::process::Command::new(strip)
        .arg(&copy)
        .stderr(std::process::Stdio::null())
        .status();
    let size = fs::metadata(&copy).ok().map(|m| m.len());
    let _ = fs::remove_file(&copy);
    size
}

fn crun_version() -> String {
    std::process::Command::new("crun")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(String::from)
        })
        .unwrap_or_default()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
