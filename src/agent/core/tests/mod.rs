//! Whole agent scenarios through the core and the fake runtime, with a manual clock: every
//! command the core gives is run by the same `perform` the shell uses, against
//! [`FakeRuntime`], and its result is handed back, until nothing is left to do. A test can
//! hold commands back (an operation still in flight) and let them finish later, in any
//! order. No root, no crun, no threads: milliseconds.

mod adopt;
mod lifecycle;
mod races;
mod rollout;
mod spec;

use super::{Command, Core, CoreConfig, Input, Now, Output};
use crate::agent::event::Event;
use crate::agent::perform;
use crate::manifest::{self, Source};
use crate::reconcile::{PodState, Tick};
use crate::runtime::fake::{Call, FakeRuntime};
use crate::source::{Entry, Snapshot, SourceKey};
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, UNIX_EPOCH};

pub const NODE: &str = "n1";
pub const DIR: &str = "/etc/kubernetes/manifests";

pub fn s(n: u64) -> Tick {
    Duration::from_secs(n)
}

/// A one-container pod; `extra` goes under the container.
pub fn yaml(name: &str, command: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [{command}]\n{extra}"
    )
}

pub struct Sim {
    pub core: Core,
    pub rt: FakeRuntime,
    pub tick: Tick,
    /// Commands the core gave that have not been performed yet.
    pub queue: VecDeque<Command>,
    /// Commands held back (operations still in flight), in the order they came.
    pub held: Vec<Command>,
    /// Which commands to hold back instead of performing.
    pub hold: Box<dyn Fn(&Command) -> bool>,
    pub events: Vec<Event>,
    pub wake: Option<Tick>,
    pub shutdown: bool,
    /// The directory's current files: name and body.
    files: Vec<(String, String)>,
}

impl Sim {
    pub fn new() -> Sim {
        Sim::with_timeout(s(240))
    }

    pub fn with_timeout(timeout: Duration) -> Sim {
        let config = CoreConfig {
            node_name: NODE.into(),
            static_pod_path: Some(DIR.into()),
            static_pod_url: None,
            runtime_request_timeout: timeout,
            rollback_after: None,
        };
        Sim {
            core: Core::new(config),
            rt: FakeRuntime::default(),
            tick: Duration::ZERO,
            queue: VecDeque::new(),
            held: Vec::new(),
            hold: Box::new(|_| false),
            events: Vec::new(),
            wake: None,
            shutdown: false,
            files: Vec::new(),
        }
    }

    pub fn now(&self) -> Now {
        Now {
            tick: self.tick,
            wall: UNIX_EPOCH + Duration::from_secs(1_767_225_600) + self.tick,
        }
    }

    /// Hands `input` to the core, then runs what follows until nothing is left to do.
    pub fn input(&mut self, input: Input) {
        let out = self.core.handle(input, self.now());
        self.take(out);
        self.settle();
    }

    fn take(&mut self, out: Output) {
        self.wake = out.wake;
        for cmd in out.commands {
            match cmd {
                Command::Event(e) => self.events.push(e),
                Command::Shutdown => self.shutdown = true,
                cmd if (self.hold)(&cmd) => self.held.push(cmd),
                cmd => self.queue.push_back(cmd),
            }
        }
    }

    /// Performs queued commands and hands their results back, exits included, until the
    /// queue is empty.
    pub fn settle(&mut self) {
        while let Some(cmd) = self.queue.pop_front() {
            let result = smol::block_on(perform(&self.rt, cmd));
            // A monitor writes its exit record before it ends, and a stop waits for the
            // monitor: the exit comes first.
            let exits: Vec<_> = self.rt.exits.borrow_mut().drain(..).collect();
            for rec in exits {
                let out = self.core.handle(Input::Exited(rec), self.now());
                self.take(out);
            }
            if let Some(input) = result {
                let out = self.core.handle(input, self.now());
                self.take(out);
            }
        }
    }

    /// Lets the held commands that `f` picks finish now.
    pub fn finish_held(&mut self, f: impl Fn(&Command) -> bool) {
        let (go, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held).into_iter().partition(f);
        self.held = keep;
        self.queue.extend(go);
        self.settle();
    }

    /// Moves the clock to `t`, waking the core at each deadline it asked for on the way.
    pub fn run_until(&mut self, t: Tick) {
        while let Some(w) = self.wake.filter(|w| *w <= t && *w >= self.tick) {
            self.tick = w;
            self.input(Input::Timer);
            if self.wake == Some(w) {
                break; // nothing changed at this instant
            }
        }
        self.tick = self.tick.max(t);
        self.input(Input::Timer);
    }

    /// Writes (or replaces) a manifest in the directory and reports the directory.
    pub fn write(&mut self, file: &str, body: &str) {
        self.files.retain(|(f, _)| f != file);
        self.files.push((file.into(), body.into()));
        self.files.sort();
        self.report_dir();
    }

    /// Writes several manifests at once: one reading of the directory.
    pub fn write_all(&mut self, files: &[(&str, String)]) {
        for (file, body) in files {
            self.files.retain(|(f, _)| f != file);
            self.files.push((file.to_string(), body.clone()));
        }
        self.files.sort();
        self.report_dir();
    }

    pub fn remove(&mut self, file: &str) {
        self.files.retain(|(f, _)| f != file);
        self.report_dir();
    }

    fn report_dir(&mut self) {
        let entries = self
            .files
            .iter()
            .map(|(file, body)| {
                let origin = std::path::PathBuf::from(DIR).join(file);
                let source = Source::File(origin.clone());
                Entry {
                    result: manifest::load(body.as_bytes(), &source, NODE),
                    origin,
                }
            })
            .collect();
        self.input(Input::Sources(Snapshot {
            key: SourceKey::Dir(DIR.into()),
            entries,
            complete: true,
            problem: None,
        }));
    }

    /// The pod named `name` (without the node suffix) that is not being removed.
    pub fn pod(&self, name: &str) -> &PodState {
        let full = format!("default/{name}-{NODE}");
        self.core
            .pods()
            .values()
            .find(|p| p.pod.full_name() == full && !p.terminating)
            .unwrap_or_else(|| panic!("no live pod {full}: {:?}", self.core.pods().keys()))
    }

    /// The status the endpoint would serve for pod `name`.
    pub fn status(&mut self, name: &str) -> Value {
        let full = format!("{name}-{NODE}");
        let now = self.now();
        let rt = &self.rt;
        let board = self.core.board(now, |p, c, a| {
            crate::runtime::Runtime::log_file(rt, p, c, a)
        });
        board
            .pods
            .into_iter()
            .find(|p| p.pod.name() == full)
            .map_or(Value::Null, |p| p.to_json())
    }

    /// The ids of the instances that run.
    pub fn live(&self) -> Vec<String> {
        self.rt.live.borrow().iter().cloned().collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.rt.calls()
    }

    /// The reasons of the Events recorded so far, in order.
    pub fn reasons(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.reason).collect()
    }

    /// Ends the instance `id` with `code`, as its monitor would report it.
    pub fn exit(&mut self, id: &str, code: i32) {
        let rec = self.rt.exit(id, code);
        self.input(Input::Exited(rec));
    }

    /// The id of the running instance of container `main` of pod `name`.
    pub fn running_id(&self, name: &str) -> String {
        self.pod(name).containers[0]
            .running()
            .map(|r| r.id.clone())
            .unwrap_or_else(|| panic!("{name}/main does not run"))
    }
}
