//! The manifest directory watch with real files and real inotify.

use crate::common;

use staticlet::desired::DesiredSet;
use staticlet::source::dir::DirSource;
use staticlet::source::{run_dir, Snapshot, SourceKey};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - {name: c, image: busybox, command: [sleep, '1']}\n";
/// The same pod in block style, to which lines can be appended.
const POD_BLOCK: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '1']\n";

struct Watch {
    rx: smol::channel::Receiver<Snapshot>,
    set: DesiredSet,
    key: SourceKey,
}

impl Watch {
    fn start(dir: &Path) -> Watch {
        let (tx, rx) = smol::channel::unbounded();
        let src = DirSource::new(dir.to_path_buf(), "n1".into());
        // A long relist period: these tests must pass on inotify alone.
        std::thread::spawn(move || {
            smol::block_on(run_dir(src, Duration::from_secs(3600), tx, |s| s))
        });
        let key = SourceKey::Dir(dir.to_path_buf());
        let mut w = Watch {
            rx,
            set: DesiredSet::new(vec![key.clone()]),
            key,
        };
        w.next().expect("the initial listing");
        w
    }

    /// The next snapshot within 5 s, applied to the desired set.
    fn next(&mut self) -> Option<Snapshot> {
        let snap = smol::block_on(smol::future::or(
            async { self.rx.recv().await.ok() },
            async {
                smol::Timer::after(Duration::from_secs(5)).await;
                None
            },
        ))?;
        assert_eq!(snap.key, self.key);
        self.set.apply(snap.clone(), "now");
        Some(snap)
    }

    fn quiet_for(&mut self, d: Duration) -> bool {
        smol::block_on(smol::future::or(
            async { self.rx.recv().await.ok().map(|_| false).unwrap_or(true) },
            async {
                smol::Timer::after(d).await;
                true
            },
        ))
    }

    fn uid(&self) -> Option<String> {
        self.set
            .desired()
            .pods
            .get("default/web-n1")
            .map(|p| p.uid().to_string())
    }
}

fn atomic_write(dir: &Path, name: &str, body: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, body).unwrap();
    fs::rename(tmp, dir.join(name)).unwrap();
}

#[test]
fn create_edit_rename_delete() {
    let dir = common::unique_dir("watch");
    let mut w = Watch::start(&dir);
    assert!(w.uid().is_none());

    atomic_write(&dir, "web.yaml", POD);
    w.next().unwrap();
    let first = w.uid().expect("pod after an atomic rename");

    // Edit in place: nothing happens until the writer closes the file.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join("web.yaml"))
        .unwrap();
    f.write_all(b"apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  contai")
        .unwrap();
    f.flush().unwrap();
    assert!(
        w.quiet_for(Duration::from_millis(700)),
        "a half-written file is not read"
    );
    assert_eq!(w.uid().as_deref(), Some(first.as_str()));
    f.write_all(b"ners:\n  - {name: c, image: busybox, command: [sleep, '2']}\n")
        .unwrap();
    drop(f);
    w.next().unwrap();
    let second = w.uid().unwrap();
    assert_ne!(first, second, "the edit replaced the pod");

    // An invalid edit keeps the last good version and reports the problem.
    atomic_write(
        &dir,
        "web.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: []}\n",
    );
    w.next().unwrap();
    assert_eq!(w.uid().as_deref(), Some(second.as_str()));
    let d = w.set.desired();
    assert_eq!(d.problems.len(), 1);
    assert!(
        d.problems[0]
            .message
            .contains("web.yaml: spec.containers: Required value"),
        "{}",
        d.problems[0].message
    );

    fs::remove_file(dir.join("web.yaml")).unwrap();
    w.next().unwrap();
    assert!(w.uid().is_none(), "deleting the file removes the pod");
    assert!(w.set.desired().problems.is_empty());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn editor_leftovers_and_odd_files_are_ignored_or_reported() {
    let dir = common::unique_dir("leftovers");
    let mut w = Watch::start(&dir);
    for name in [
        "4913",
        "web.yaml~",
        ".web.yaml.swp",
        "web.yaml.bak",
        "#web.yaml#",
        "notes.txt",
    ] {
        fs::write(dir.join(name), POD).unwrap();
    }
    fs::create_dir(dir.join("sub.yaml")).unwrap();
    assert!(
        w.quiet_for(Duration::from_millis(700)),
        "leftovers cause no change"
    );
    assert!(w.set.desired().pods.is_empty());

    // A FIFO named like a manifest must not hang the watcher: it is reported.
    let fifo = dir.join("pipe.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    atomic_write(&dir, "web.yaml", POD);
    w.next().unwrap();
    let d = w.set.desired();
    assert!(
        d.pods.contains_key("default/web-n1"),
        "the real manifest still loads"
    );
    // The FIFO is seen at the next relist (it never gets a close-write); force one.
    let mut src = DirSource::new(dir.clone(), "n1".into());
    src.relist(std::time::SystemTime::now() + Duration::from_secs(10));
    let snap = src.snapshot();
    let fifo_entry = snap
        .entries
        .iter()
        .find(|e| e.origin == fifo)
        .expect("the FIFO is listed");
    let err = fifo_entry.result.as_ref().unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn duplicate_names_across_files_name_both() {
    let dir = common::unique_dir("dups");
    let mut w = Watch::start(&dir);
    atomic_write(&dir, "a.yaml", POD);
    w.next().unwrap();
    atomic_write(&dir, "b.yaml", &POD.replace("'1'", "'9'"));
    w.next().unwrap();
    let d = w.set.desired();
    assert_eq!(d.pods.len(), 1);
    assert_eq!(
        d.pods["default/web-n1"].source,
        staticlet::manifest::Source::File(dir.join("a.yaml"))
    );
    let msg = &d.problems[0].message;
    assert!(msg.contains("a.yaml") && msg.contains("b.yaml"), "{msg}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn validate_command_reads_like_run() {
    let dir = common::unique_dir("validate");
    atomic_write(&dir, "good.yaml", POD);
    fs::write(dir.join("good.yaml~"), "garbage: [").unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["validate", "--node-name", "n1"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 pod(s) valid"));
    let bad = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests/invalid/13-container-name-underscore.yaml");
    let out = std::process::Command::new(common::bin())
        .args(["validate", "--node-name", "n1"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(bad.to_str().unwrap()) && text.contains("spec.containers[0].name"),
        "{text}"
    );
    fs::remove_dir_all(dir).unwrap();
}

/// Waits for a snapshot that satisfies `f` (snapshots in between are applied too).
fn wait_for(w: &mut Watch, what: &str, f: impl Fn(&Watch) -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !f(w) {
        assert!(
            std::time::Instant::now() < end && w.next().is_some(),
            "no snapshot with {what} within 5 s (the relist is an hour away: inotify must see it)"
        );
    }
}

fn has_pod(w: &Watch, name: &str) -> bool {
    w.set
        .desired()
        .pods
        .contains_key(&format!("default/{name}-n1"))
}

/// Files beside the manifest directory are never manifests, whatever the watch is doing.
fn drop_into_parent(parent: &Path) {
    fs::write(parent.join("beside.yaml"), POD.replace("web", "beside")).unwrap();
    fs::write(parent.join("beside.txt"), "not a manifest").unwrap();
}

fn assert_parent_never_read(w: &Watch, parent: &Path) {
    let d = w.set.desired();
    assert!(!has_pod(w, "beside"), "a file in the parent became a pod");
    for p in &d.problems {
        assert!(!p.origin.contains("beside"), "{}", p.message);
    }
    let _ = parent;
}

#[test]
fn a_recreated_directory_is_watched_again() {
    let parent = common::unique_dir("recreate");
    let dir = parent.join("manifests");
    fs::create_dir(&dir).unwrap();
    atomic_write(&dir, "web.yaml", POD);
    let mut w = Watch::start(&dir);
    assert!(w.uid().is_some());

    fs::remove_dir_all(&dir).unwrap();
    wait_for(&mut w, "the pod gone with its directory", |w| {
        w.uid().is_none()
    });
    drop_into_parent(&parent);
    fs::create_dir(&dir).unwrap();
    // A change in the new directory is seen by inotify, at once.
    atomic_write(&dir, "again.yaml", &POD.replace("web", "again"));
    wait_for(&mut w, "the pod of the recreated directory", |w| {
        has_pod(w, "again")
    });
    // And an in-place edit there too (a close-write event on the new watch).
    fs::write(dir.join("again.yaml"), POD.replace("web", "again2")).unwrap();
    wait_for(&mut w, "the edit in the recreated directory", |w| {
        has_pod(w, "again2")
    });
    drop_into_parent(&parent);
    assert!(
        w.quiet_for(Duration::from_millis(700)),
        "the parent's files cause no change"
    );
    assert_parent_never_read(&w, &parent);
    fs::remove_dir_all(parent).unwrap();
}

#[test]
fn a_directory_missing_at_start_is_watched_once_created() {
    let parent = common::unique_dir("late");
    let dir = parent.join("manifests");
    let mut w = Watch::start(&dir);
    drop_into_parent(&parent);
    assert!(
        w.quiet_for(Duration::from_millis(700)),
        "the parent's files cause no change"
    );
    fs::create_dir(&dir).unwrap();
    atomic_write(&dir, "web.yaml", POD);
    wait_for(&mut w, "the pod of the new directory", |w| {
        w.uid().is_some()
    });
    assert!(
        w.set.desired().complete,
        "the source counts as read once it exists"
    );
    fs::write(dir.join("late.yaml"), POD.replace("web", "late")).unwrap();
    wait_for(&mut w, "a second file in the new directory", |w| {
        has_pod(w, "late")
    });
    drop_into_parent(&parent);
    assert!(w.quiet_for(Duration::from_millis(700)));
    assert_parent_never_read(&w, &parent);
    fs::remove_dir_all(parent).unwrap();
}

#[test]
fn a_file_held_open_for_writing_is_not_read_by_the_relist() {
    // The settle time is 1 s; a writer pausing longer must still not have its first half read.
    let dir = common::unique_dir("halfwritten");
    let (tx, rx) = smol::channel::unbounded();
    let src = DirSource::new(dir.clone(), "n1".into());
    std::thread::spawn(move || smol::block_on(run_dir(src, Duration::from_millis(300), tx, |s| s)));
    let key = SourceKey::Dir(dir.clone());
    let mut w = Watch {
        rx,
        set: DesiredSet::new(vec![key.clone()]),
        key,
    };
    w.next().expect("the initial listing");
    let mut f = fs::File::create(dir.join("web.yaml")).unwrap();
    // The first half is a valid pod on its own.
    f.write_all(POD_BLOCK.as_bytes()).unwrap();
    f.flush().unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        if w.next().is_some() {
            assert!(w.uid().is_none(), "the half-written file was read");
        }
    }
    f.write_all(b"    env: [{name: COMPLETE, value: 'yes'}]\n")
        .unwrap();
    drop(f);
    wait_for(&mut w, "the complete file", |w| w.uid().is_some());
    let d = w.set.desired();
    let env = &d.pods["default/web-n1"].pod.spec.containers[0].env;
    assert_eq!(env.len(), 1, "the pod has the complete content");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn validate_warns_about_unknown_fields_and_strict_refuses_them() {
    let dir = common::unique_dir("unknown");
    let typo =
        POD_BLOCK.replace("command:", "comand: [x]\n    command:") + "  restartPolicyy: Never\n";
    fs::write(dir.join("typo.yaml"), &typo).unwrap();
    let run = |strict: bool| {
        let mut c = std::process::Command::new(common::bin());
        c.args(["validate", "--node-name", "n1"]);
        if strict {
            c.arg("--strict");
        }
        let out = c.arg(dir.join("typo.yaml")).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(false);
    assert_eq!(code, Some(0), "{text}");
    for field in ["spec.containers[0].comand", "spec.restartPolicyy"] {
        assert!(
            text.lines().any(|l| l.contains("typo.yaml")
                && l.contains(field)
                && l.contains("unknown field")),
            "{field}\n{text}"
        );
    }
    let (code, text) = run(true);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("spec.containers[0].comand"), "{text}");
    assert!(text.contains("0 pod(s) valid"), "{text}");
    // Fields Kubernetes knows but staticlet ignores are not unknown.
    for f in ["16-ignored-fields.yaml", "17-kubectl-dry-run-output.yaml"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/manifests/valid")
            .join(f);
        let out = std::process::Command::new(common::bin())
            .args(["validate", "--strict", "--node-name", "n1"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_single_manifest_file_is_watched_alone() {
    let dir = common::unique_dir("single");
    let file = dir.join("web.yaml");
    atomic_write(&dir, "web.yaml", POD);
    let mut w = Watch::start(&file);
    let first = w.uid().expect("the single file's pod");
    // A sibling is not part of the source, whatever its name.
    atomic_write(&dir, "other.yaml", &POD.replace("web", "other"));
    assert!(
        w.quiet_for(Duration::from_millis(700)),
        "a sibling causes no change"
    );
    atomic_write(&dir, "web.yaml", &POD.replace("'1'", "'2'"));
    wait_for(&mut w, "the replaced file", |w| {
        w.uid().is_some_and(|u| u != first)
    });
    assert!(!has_pod(&w, "other"));
    fs::remove_file(&file).unwrap();
    wait_for(&mut w, "the pod gone with its file", |w| w.uid().is_none());
    fs::remove_dir_all(dir).unwrap();
}
