//! What a panic (a bug) costs: the input that caused it, not the gateway.
//!
//! Release builds abort on a panic (`panic = "abort"`): unwinding tables and landing pads
//! are a quarter of the static aarch64 binary, which would not fit its 3 MB budget with
//! them. The agent's supervisor (the init script, the systemd unit) starts it again, the
//! containers keep running under their monitors meanwhile, and the new agent adopts them,
//! as after a SIGKILL. (Builds that unwind, such as the tests', fail the one job instead.)
//!
//! What must not happen is a loop: a manifest or a layer that makes the agent panic would
//! make it panic again after every restart. So work on untrusted input names itself with
//! [`doing`] (`manifest <file> sha256:<content>`, `layer <digest>`); the panic hook writes
//! that name, the message and the place into `<rootDir>/panic.json` (atomically) and logs
//! one line, and from then on, in this run and the next, [`refused`] turns the same work on
//! the same content into an ordinary error that names the file and says to change it.

use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The last panic: what was being done, and where it is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanicRecord {
    /// The [`doing`] name of the work that panicked; `None` outside named work.
    pub doing: Option<String>,
    pub message: String,
    pub location: String,
    pub at: String,
}

struct State {
    file: Option<PathBuf>,
    last: Option<PanicRecord>,
}

static STATE: Mutex<State> = Mutex::new(State {
    file: None,
    last: None,
});

thread_local! {
    static DOING: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Names the work this thread does until the guard drops (restoring the previous name).
#[must_use = "the name lasts as long as the guard"]
pub struct Doing(Option<String>);

pub fn doing(what: String) -> Doing {
    Doing(DOING.with(|d| d.replace(Some(what))))
}

impl Drop for Doing {
    fn drop(&mut self) {
        let previous = self.0.take();
        DOING.with(|d| *d.borrow_mut() = previous);
    }
}

/// The [`doing`] name for a manifest's content: the same file with other content is other
/// work.
pub fn manifest_work(origin: &str, content: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(content);
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("manifest {origin} sha256:{hex}")
}

/// Why `what` is refused: it panicked before (in this run or the last). The message is for
/// the user and says what to do.
pub fn refused(what: &str) -> Option<String> {
    let st = state();
    let last = st.last.as_ref()?;
    (last.doing.as_deref() == Some(what)).then(|| {
        format!(
            "staticlet stopped on a panic (a bug; please report it) at {} while it worked on \
             this exact content: {}; it is refused until it changes",
            last.at, last.message
        )
    })
}

/// Reads the last run's record from `file`, logs it, and installs the hook that writes the
/// next one there.
pub fn install(file: &Path) {
    load(file);
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        record(message, location);
    }));
}

fn load(file: &Path) {
    let previous = std::fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice::<PanicRecord>(&b).ok());
    if let Some(p) = &previous {
        log::warn!(
            "the last run stopped on a panic at {} while {}: {} ({}); that work is refused \
             until its input changes",
            p.at,
            p.doing.as_deref().unwrap_or("outside any named work"),
            p.message,
            p.location
        );
    }
    {
        let mut st = state();
        st.file = Some(file.to_path_buf());
        st.last = previous;
    }
}

/// Keeps the panic of the current thread: logged, written, and refused from now on.
fn record(message: String, location: String) {
    let rec = PanicRecord {
        doing: DOING.with(|d| d.borrow().clone()),
        message,
        location,
        at: crate::sys::timefmt::rfc3339(std::time::SystemTime::now()),
    };
    log::error!(
        "panic (a bug; please report it) while {}: {} at {}",
        rec.doing.as_deref().unwrap_or("outside any named work"),
        rec.message,
        rec.location
    );
    // A panic inside the lock (a poisoned or re-entered state) must not hang the hook.
    let Ok(mut st) = STATE.try_lock() else {
        return;
    };
    if let Some(file) = &st.file {
        if let Ok(json) = serde_json::to_vec(&rec) {
            let _ = crate::sys::fsutil::write_replace(file, &json);
        }
    }
    st.last = Some(rec);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test owns the process-wide state, so the steps run in order. The hook itself is
    /// not installed here (other tests of this binary panic on purpose); `record` is what it
    /// calls, on the panicking thread.
    #[test]
    fn a_panic_is_kept_and_its_work_refused_in_this_run_and_the_next() {
        let dir = std::env::temp_dir().join(format!("stl-panics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("panic.json");
        load(&file);
        let work = manifest_work("/m/web.yaml", b"kind: Pod");
        assert_ne!(work, manifest_work("/m/web.yaml", b"kind: Pod\n"));
        assert_eq!(refused(&work), None);

        let outer = doing("the outer work".into());
        std::thread::spawn({
            let work = work.clone();
            move || {
                let _named = doing(work);
                record("a parser bug".into(), "src/x.rs:1".into());
            }
        })
        .join()
        .unwrap();
        assert_eq!(
            DOING.with(|d| d.borrow().clone()).as_deref(),
            Some("the outer work")
        );
        drop(outer);
        assert_eq!(
            DOING.with(|d| d.borrow().clone()),
            None,
            "the guard restores"
        );

        let why = refused(&work).expect("refused in this run");
        assert!(
            why.contains("a parser bug") && why.contains("until it changes"),
            "{why}"
        );
        assert_eq!(refused(&manifest_work("/m/web.yaml", b"other")), None);

        let kept: PanicRecord = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(kept.doing.as_deref(), Some(work.as_str()));
        assert_eq!(kept.location, "src/x.rs:1");

        // The next run reads it back and refuses the same work.
        state().last = None;
        assert_eq!(refused(&work), None);
        load(&file);
        assert!(refused(&work).is_some());
        state().last = None;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
