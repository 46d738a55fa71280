//! A recording runtime for the core's unit tests: every call is recorded, answers are
//! scripted per container (or the default: success), and a stop makes the instance end as
//! a real one would (an exit record the test hands back to the core). It keeps the set of
//! live instances, so a test can assert that a container never runs twice at once.

use super::podsetup::Sandbox;
use super::records::RecordError;
use super::{
    ContainerRecord, Created, ExitRecord, HandlerResult, HandlerSpec, InstanceSpec, Inventory,
    Layout, Running, Runtime, SandboxError, StartError, StopOutcome, StopSpec, SweepReport,
    SweepScope, TeardownError,
};
use crate::manifest::StaticPod;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One call the core's commands made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Setup(String),
    Create(String),
    Launch(String),
    Abandon(String),
    Stop(String),
    Handler(String),
    Release(String),
    Teardown(String),
    Save(String, String),
    Sweep,
}

/// A scripted answer for a container's next create or launch.
pub type StartAnswer = Box<dyn Fn() -> StartError>;

#[derive(Default)]
pub struct FakeRuntime {
    pub calls: RefCell<Vec<Call>>,
    /// Failures for the next setups of any pod, in order; then success.
    pub setup_failures: RefCell<VecDeque<SandboxError>>,
    /// Failures for a container's next creates (by container name), in order.
    pub create_failures: RefCell<HashMap<String, VecDeque<StartAnswer>>>,
    /// Failures for a container's next launches (by container name), in order.
    pub launch_failures: RefCell<HashMap<String, VecDeque<StartAnswer>>>,
    /// Results of a container's next probes or hooks (by container name); then success.
    pub handler_results: RefCell<HashMap<String, VecDeque<bool>>>,
    /// Images that are not present (a create pulls them and says so).
    pub missing_images: RefCell<BTreeSet<String>>,
    /// Instances that run, by id.
    pub live: RefCell<BTreeSet<String>>,
    /// The most instances of one container (by pod uid and name) live at once.
    pub most_at_once: RefCell<BTreeMap<(String, String), usize>>,
    /// Exit records of instances that ended (stopped), for the test to hand to the core.
    pub exits: RefCell<Vec<ExitRecord>>,
    /// Stops end instances without an exit record (a monitor that died before writing it).
    pub lose_exits: Cell<bool>,
    /// What `inventory` answers.
    pub found: RefCell<Option<Inventory>>,
    /// The rollouts saved last.
    pub rollouts: RefCell<Vec<crate::desired::Rollout>>,
    /// Container records saved, by pod uid and name.
    pub records: RefCell<BTreeMap<(String, String), ContainerRecord>>,
    /// Launches abandoned (by id): a launch that reports after that fails, as a killed
    /// monitor's does.
    pub abandoned: RefCell<BTreeSet<String>>,
    /// Every instance launched: pod uid, container name and attempt, by id.
    instances: RefCell<HashMap<String, (String, String, u32)>>,
    next_pid: Cell<i32>,
}

impl FakeRuntime {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    pub fn count(&self, f: impl Fn(&Call) -> bool) -> usize {
        self.calls.borrow().iter().filter(|c| f(c)).count()
    }

    pub fn fail_create(&self, container: &str, e: impl Fn() -> StartError + 'static) {
        self.create_failures
            .borrow_mut()
            .entry(container.into())
            .or_default()
            .push_back(Box::new(e));
    }

    pub fn fail_launch(&self, container: &str, e: impl Fn() -> StartError + 'static) {
        self.launch_failures
            .borrow_mut()
            .entry(container.into())
            .or_default()
            .push_back(Box::new(e));
    }

    pub fn probe_answers(&self, container: &str, answers: &[bool]) {
        self.handler_results
            .borrow_mut()
            .entry(container.into())
            .or_default()
            .extend(answers);
    }

    /// An instance that was running before the agent started (for adoption).
    pub fn adopted(&self, uid: &str, running: &Running) {
        let name = running
            .id
            .rsplit_once('-')
            .and_then(|(rest, _)| rest.split_once('-'))
            .map_or("", |(_, name)| name);
        self.instances.borrow_mut().insert(
            running.id.clone(),
            (uid.to_string(), name.to_string(), running.attempt),
        );
        self.live.borrow_mut().insert(running.id.clone());
    }

    /// Ends a live instance as its monitor would: removed from the live set, with an exit
    /// record for the test to hand to the core.
    pub fn exit(&self, id: &str, code: i32) -> ExitRecord {
        self.live.borrow_mut().remove(id);
        let (pod_uid, container, attempt) =
            self.instances.borrow().get(id).cloned().unwrap_or_default();
        ExitRecord {
            id: id.into(),
            pod_uid,
            container,
            attempt,
            started_at: Some("2026-01-01T00:00:00Z".into()),
            finished_at: "2026-01-01T00:01:00Z".into(),
            exit_code: code,
            signal: (code > 128).then_some(code - 128),
            oom_killed: false,
            error: None,
        }
    }

    fn record(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }

    fn scripted(
        map: &RefCell<HashMap<String, VecDeque<StartAnswer>>>,
        name: &str,
    ) -> Option<StartError> {
        map.borrow_mut()
            .get_mut(name)
            .and_then(VecDeque::pop_front)
            .map(|f| f())
    }
}

pub fn id_of(spec: &InstanceSpec) -> String {
    Layout::container_id(spec.pod.uid(), spec.container_name(), spec.attempt)
}

impl Runtime for FakeRuntime {
    async fn setup_sandbox(&self, pod: &Arc<StaticPod>) -> Result<Sandbox, SandboxError> {
        self.record(Call::Setup(pod.uid().into()));
        match self.setup_failures.borrow_mut().pop_front() {
            Some(e) => Err(e),
            None => Ok(Sandbox {
                hostname: pod.name().into(),
                host_ip: "192.0.2.1".into(),
                ..Default::default()
            }),
        }
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<Created, StartError> {
        self.record(Call::Create(id_of(spec)));
        if let Some(e) = Self::scripted(&self.create_failures, spec.container_name()) {
            return Err(e);
        }
        let image = spec.pod.container(spec.index).image.clone();
        let pulled = self.missing_images.borrow_mut().remove(&image);
        Ok(Created { image, pulled })
    }

    async fn launch(&self, spec: &InstanceSpec) -> Result<Running, StartError> {
        let id = id_of(spec);
        self.record(Call::Launch(id.clone()));
        if let Some(e) = Self::scripted(&self.launch_failures, spec.container_name()) {
            return Err(e);
        }
        if self.abandoned.borrow().contains(&id) {
            return Err(StartError::Run("the monitor ended without a report".into()));
        }
        self.live.borrow_mut().insert(id.clone());
        self.instances.borrow_mut().insert(
            id.clone(),
            (
                spec.pod.uid().to_string(),
                spec.container_name().to_string(),
                spec.attempt,
            ),
        );
        let prefix = format!("{}-{}-", &id[..12.min(id.len())], spec.container_name());
        let at_once = self
            .live
            .borrow()
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .count();
        let mut most = self.most_at_once.borrow_mut();
        let key = (
            spec.pod.uid().to_string(),
            spec.container_name().to_string(),
        );
        let m = most.entry(key).or_default();
        *m = (*m).max(at_once);
        let pid = self.next_pid.get() + 100;
        self.next_pid.set(pid + 1);
        Ok(Running {
            attempt: spec.attempt,
            id,
            pid,
            monitor_pid: pid + 1,
            started_at: "2026-01-01T00:00:00Z".into(),
            since: Duration::ZERO,
        })
    }

    async fn abandon(&self, spec: &InstanceSpec) -> Result<(), StartError> {
        let id = id_of(spec);
        self.record(Call::Abandon(id.clone()));
        self.live.borrow_mut().remove(&id);
        self.abandoned.borrow_mut().insert(id);
        Ok(())
    }

    async fn stop(&self, spec: &StopSpec) -> StopOutcome {
        self.record(Call::Stop(spec.id.clone()));
        let was_live = self.live.borrow().contains(&spec.id);
        if was_live {
            let rec = self.exit(&spec.id, 143);
            if !self.lose_exits.get() {
                self.exits.borrow_mut().push(rec);
            }
        }
        StopOutcome {
            gone: true,
            ..Default::default()
        }
    }

    async fn exec(
        &self,
        id: &str,
        _cmd: &[String],
        _timeout: Duration,
    ) -> Result<(i32, String), super::crun::CrunError> {
        self.record(Call::Handler(id.into()));
        Ok((0, String::new()))
    }

    async fn run_handler(&self, spec: &HandlerSpec) -> HandlerResult {
        self.record(Call::Handler(spec.running.id.clone()));
        let name = &spec.pod.container(spec.index).name;
        let success = self
            .handler_results
            .borrow_mut()
            .get_mut(name)
            .and_then(VecDeque::pop_front)
            .unwrap_or(true);
        HandlerResult {
            success,
            message: if success {
                String::new()
            } else {
                "HTTP 500".into()
            },
        }
    }

    async fn release(&self, exit: &ExitRecord) {
        self.record(Call::Release(exit.id.clone()));
    }

    async fn teardown(&self, pod: &Arc<StaticPod>, _keep_logs: bool) -> Result<(), TeardownError> {
        self.record(Call::Teardown(pod.uid().into()));
        Ok(())
    }

    fn save_container(
        &self,
        uid: &str,
        container: &str,
        record: &ContainerRecord,
    ) -> Result<(), RecordError> {
        self.record(Call::Save(uid.into(), container.into()));
        self.records
            .borrow_mut()
            .insert((uid.into(), container.into()), record.clone());
        Ok(())
    }

    fn save_rollouts(&self, rollouts: &[crate::desired::Rollout]) -> Result<(), RecordError> {
        *self.rollouts.borrow_mut() = rollouts.to_vec();
        Ok(())
    }

    async fn inventory(&self) -> Inventory {
        self.found.borrow_mut().take().unwrap_or_default()
    }

    async fn sweep(&self, _scope: &SweepScope) -> SweepReport {
        self.record(Call::Sweep);
        SweepReport::default()
    }

    async fn watch_exits(&self, _tx: smol::channel::Sender<ExitRecord>) {}

    fn log_file(&self, pod: &StaticPod, container: &str, attempt: u32) -> PathBuf {
        PathBuf::from(format!(
            "/fake/logs/{}_{}_{}/{container}/{attempt}.log",
            pod.namespace(),
            pod.name(),
            pod.uid()
        ))
    }
}
