//! One pod's state: its manifest (shared with every action in flight), its containers, its
//! sandbox and whether it is being removed; and the kubelet's rules for when a container is
//! done.

use super::backoff::Backoff;
use super::container::ContainerState;
use super::Tick;
use crate::manifest::pod::Container;
use crate::manifest::StaticPod;
use crate::runtime::podsetup::Sandbox;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum SandboxState {
    Missing,
    SettingUp,
    Ready(Sandbox),
    /// It was set up, and has lost a part since (`what`): its containers are stopped, then
    /// it is set up again.
    Lost {
        sandbox: Sandbox,
        what: String,
    },
    Failed {
        message: String,
        retry_at: Tick,
    },
    TearingDown,
    Gone,
}

impl SandboxState {
    /// The sandbox as it was set up, for actions that need its paths (a stop's hook).
    pub fn paths(&self) -> Option<&Sandbox> {
        match self {
            SandboxState::Ready(sb) | SandboxState::Lost { sandbox: sb, .. } => Some(sb),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PodState {
    /// Shared with every action in flight: a pod with hundreds of containers is one copy,
    /// not one per start, probe and stop.
    pub pod: Arc<StaticPod>,
    pub containers: Vec<ContainerState>,
    pub sandbox: SandboxState,
    pub sandbox_backoff: Backoff,
    pub terminating: bool,
    pub start_time: String,
    /// The value of the Ready and ContainersReady conditions and when it last changed
    /// (their `lastTransitionTime`); set by [`PodState::note_ready`].
    pub ready_since: Option<(bool, String)>,
    /// When `activeDeadlineSeconds` runs out, counted from `start_time` (which survives an
    /// agent restart, so a restart never extends it); set by [`PodState::set_active_deadline`].
    pub active_deadline: Option<Tick>,
    /// The deadline ran out: every container stopped for good, the pod Failed with reason
    /// `DeadlineExceeded`, as the kubelet does.
    pub deadline_exceeded: bool,
    /// When this pod's trial as a candidate ends (see `agent::core::rollout`); set when first
    /// judged, from `start_time`.
    pub trial_deadline: Option<Tick>,
}

impl PodState {
    pub fn new(pod: impl Into<Arc<StaticPod>>, start_time: String) -> PodState {
        let pod = pod.into();
        let spec = &pod.pod.spec;
        let containers = spec
            .init_containers
            .iter()
            .map(|c| (c, true))
            .chain(spec.containers.iter().map(|c| (c, false)))
            .map(|(c, init)| ContainerState {
                name: c.name.clone(),
                init,
                sidecar: init && c.restart_policy.as_deref() == Some("Always"),
                ..Default::default()
            })
            .collect();
        PodState {
            pod,
            containers,
            sandbox: SandboxState::Missing,
            sandbox_backoff: Backoff::default(),
            terminating: false,
            start_time,
            ready_since: None,
            active_deadline: None,
            deadline_exceeded: false,
            trial_deadline: None,
        }
    }

    /// Sets [`PodState::active_deadline`] from the spec and `start_time`, given the clock.
    pub fn set_active_deadline(&mut self, tick: Tick, wall: std::time::SystemTime) {
        let Some(secs) = self.pod.pod.spec.active_deadline_seconds else {
            return;
        };
        let elapsed = crate::sys::timefmt::parse_rfc3339(&self.start_time)
            .and_then(|t| wall.duration_since(t).ok())
            .unwrap_or_default();
        self.active_deadline = Some(tick + super::secs(secs).saturating_sub(elapsed));
    }

    pub fn spec_of(&self, index: usize) -> &Container {
        self.pod.container(index)
    }

    pub fn uid(&self) -> &str {
        self.pod.uid()
    }

    /// `namespace/name/container`, as every log line names a container.
    pub fn container_name(&self, index: usize) -> String {
        let c = self.containers.get(index).map_or("", |c| c.name.as_str());
        format!("{}/{c}", self.pod.full_name())
    }

    /// Whether a container that ended with `exit_code` is started again under the pod's policy.
    pub fn restarts(&self, c: &ContainerState, exit_code: i32) -> bool {
        if c.sidecar {
            return !self.apps_done();
        }
        // An init container that succeeded is done whatever the policy.
        self.pod.pod.spec.restart_policy().restarts(exit_code) && !(c.init && exit_code == 0)
    }

    /// Every app container has ended for good (a pod with `restartPolicy` Never or
    /// OnFailure): its sidecars are stopped and not started again.
    pub fn apps_done(&self) -> bool {
        let mut apps = self.containers.iter().filter(|c| !c.init).peekable();
        apps.peek().is_some() && apps.all(|c| self.finished(c))
    }

    /// Every init container that is not a sidecar has succeeded: the pod is initialized, and
    /// a sidecar that restarts no longer holds the app containers up.
    pub fn regular_inits_done(&self) -> bool {
        self.containers
            .iter()
            .filter(|c| c.init && !c.sidecar)
            .all(|c| self.finished(c) && c.last.as_ref().is_some_and(|t| t.exit_code == 0))
    }

    /// A sidecar that runs and has started (its startup probe and postStart hook passed):
    /// the next init container may start.
    pub fn sidecar_started(&self, c: &ContainerState) -> bool {
        c.running().is_some() && c.started && !c.post_start_pending
    }

    /// An init container that succeeded, or an app container that ended for good.
    pub fn finished(&self, c: &ContainerState) -> bool {
        !c.phase.is_busy()
            && c.last.as_ref().is_some_and(|t| {
                if c.init {
                    t.exit_code == 0 || !self.restarts(c, t.exit_code)
                } else {
                    !self.restarts(c, t.exit_code)
                }
            })
    }

    pub fn all_stopped(&self) -> bool {
        self.containers.iter().all(|c| !c.phase.is_busy())
    }

    /// True when an init container failed for good (restartPolicy Never).
    pub fn init_failed(&self) -> bool {
        self.containers.iter().any(|c| {
            c.init
                && !c.sidecar
                && self.finished(c)
                && c.last.as_ref().is_some_and(|t| t.exit_code != 0)
        })
    }

    /// The grace period its containers get when stopped.
    pub fn grace(&self) -> std::time::Duration {
        super::secs(self.pod.pod.spec.grace_period_seconds())
    }
}
