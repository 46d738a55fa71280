//! The manifest directory watch with real files and real inotify.

mod common;

use staticlet::desired::DesiredSet;
use staticlet::source::dir::DirSource;
use staticlet::source::{run_dir, Snapshot, SourceKey};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - {name: c, image: busybox, command: [sleep, '1']}\n";

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
