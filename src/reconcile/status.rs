//! Status computation: a pod's state becomes the status the kubelet would report (phase,
//! conditions, container statuses), as the typed [`PodStatus`] the board carries. Pure: the
//! wall-clock time is passed in.

use super::{ContainerState, PodState, SandboxState, Terminated, Tick};
use crate::status::pod::{
    Condition, ContainerState as State, ContainerStatus, LastState, Phase, PodIp, PodStatus,
    Status, TerminatedState,
};
use serde_json::Value;

/// The kubelet's message for a pod past its `activeDeadlineSeconds`.
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

fn terminated(t: &Terminated) -> TerminatedState {
    TerminatedState {
        exit_code: t.exit_code,
        reason: t.reason.clone(),
        finished_at: t.finished_at.clone(),
        signal: t.signal,
        message: t.message.clone(),
        started_at: t.started_at.clone(),
    }
}

fn waiting(reason: &str, message: Option<String>) -> State {
    State::Waiting {
        reason: reason.into(),
        message,
    }
}

fn container_status(
    s: &PodState,
    index: usize,
    c: &ContainerState,
    now: Tick,
    init_pending: bool,
) -> ContainerStatus {
    let spec = s.spec_of(index);
    let running = c.running();
    let state = if let Some(r) = running {
        State::Running {
            started_at: r.started_at.clone(),
        }
    } else if s.finished(c) || (s.terminating && c.last.is_some()) {
        match &c.last {
            Some(t) => State::Terminated(terminated(t)),
            None => waiting("ContainerCreating", None),
        }
    } else if c.backoff.waiting(now) && c.last.is_some() {
        let delay = c
            .backoff
            .delay
            .map(|d| (d / 2).as_secs().max(10))
            .unwrap_or(10);
        waiting(
            "CrashLoopBackOff",
            Some(format!(
                "back-off {delay}s restarting failed container={} pod={}_{}({})",
                c.name,
                s.pod.name(),
                s.pod.namespace(),
                s.pod.uid()
            )),
        )
    } else if let Some((reason, message)) = &c.waiting {
        // After the first failed pull, the kubelet shows the backoff.
        let reason = if reason == "ErrImagePull" && c.backoff.waiting(now) {
            "ImagePullBackOff"
        } else {
            reason.as_str()
        };
        waiting(reason, Some(message.clone()))
    } else if let SandboxState::Failed { message, .. } = &s.sandbox {
        // Why the pod cannot start (the kubelet says it in a FailedCreatePodSandBox event).
        waiting("ContainerCreating", Some(message.clone()))
    } else if init_pending && !c.init {
        waiting("PodInitializing", None)
    } else {
        waiting("ContainerCreating", None)
    };
    let last_state = match (&c.last, &state) {
        (Some(t), State::Waiting { .. } | State::Running { .. }) => Some(LastState {
            terminated: terminated(t),
        }),
        _ => None,
    };
    ContainerStatus {
        name: c.name.clone(),
        image: spec.image.clone(),
        image_id: String::new(),
        ready: c.ready && running.is_some(),
        started: c.started && running.is_some(),
        restart_count: c.restart_count,
        state,
        container_id: running.map(|r| format!("crun://{}", r.id)),
        last_state,
    }
}

/// The pod's phase, by the kubelet's rules.
pub fn phase(s: &PodState) -> Phase {
    if s.init_failed() || s.deadline_exceeded {
        return Phase::Failed;
    }
    let apps: Vec<&ContainerState> = s.containers.iter().filter(|c| !c.init).collect();
    if apps.iter().all(|c| s.finished(c)) && !apps.is_empty() {
        return if apps
            .iter()
            .all(|c| c.last.as_ref().is_some_and(|t| t.exit_code == 0))
        {
            Phase::Succeeded
        } else {
            Phase::Failed
        };
    }
    if apps.iter().any(|c| c.running().is_some() || c.ever_started) {
        Phase::Running
    } else {
        Phase::Pending
    }
}

impl PodState {
    /// Whether every app container runs and is ready: the Ready and ContainersReady value.
    pub fn ready(&self) -> bool {
        self.containers
            .iter()
            .filter(|c| !c.init || c.sidecar)
            .all(|c| c.ready && c.running().is_some())
    }

    /// Records when Ready changes value, at `wall`, so its `lastTransitionTime` says when
    /// the condition changed and not when it was last published. The first record of a pod
    /// found ready (adopted at start-up) dates from its newest container start, the earliest
    /// moment it can have been ready; the agent did not see the real moment.
    pub fn note_ready(&mut self, wall: &str) {
        let ready = self.ready();
        if self.ready_since.as_ref().is_some_and(|(v, _)| *v == ready) {
            return;
        }
        let adopted_at = self
            .containers
            .iter()
            .filter(|c| !c.init)
            .filter_map(|c| c.running().map(|r| r.started_at.as_str()))
            .max()
            .filter(|t| !t.is_empty());
        let at = match (&self.ready_since, adopted_at) {
            (None, Some(t)) if ready => t,
            _ => wall,
        };
        self.ready_since = Some((ready, at.to_string()));
    }
}

fn condition(kind: &str, ok: bool, at: &str) -> Condition {
    Condition {
        kind: kind.into(),
        status: if ok { "True" } else { "False" },
        reason: None,
        message: None,
        last_probe_time: Some(None),
        last_transition_time: at.into(),
    }
}

/// The pod as the board carries it. `problem` is a manifest error to show on the pod (its
/// last good version is what runs).
pub fn pod_status(s: &PodState, now: Tick, wall: &str, problem: Option<&str>) -> PodStatus {
    pod_status_with(s, now, wall, problem, None)
}

/// As [`pod_status`], with the message of a rollback that brought this version back (a
/// `staticlet.dev/RolledBack` condition).
pub fn pod_status_with(
    s: &PodState,
    now: Tick,
    wall: &str,
    problem: Option<&str>,
    rolled_back: Option<&str>,
) -> PodStatus {
    let init_pending =
        !s.regular_inits_done() || s.containers.iter().any(|c| c.sidecar && !c.ever_started);
    let mut init_statuses = Vec::new();
    let mut statuses = Vec::new();
    for (i, c) in s.containers.iter().enumerate() {
        let v = container_status(s, i, c, now, init_pending);
        if c.init {
            init_statuses.push(v)
        } else {
            statuses.push(v)
        }
    }
    let ready = s.ready();
    // When Ready last changed, as recorded by note_ready; `wall` only for a state that was
    // never noted (the value then is new).
    let ready_at = match &s.ready_since {
        Some((v, at)) if *v == ready => at.as_str(),
        _ => wall,
    };
    let sandbox_ready = matches!(s.sandbox, SandboxState::Ready(_));
    let mut conditions = vec![
        condition("PodReadyToStartContainers", sandbox_ready, &s.start_time),
        condition("Initialized", !init_pending, &s.start_time),
        condition("Ready", ready, ready_at),
        condition("ContainersReady", ready, ready_at),
        condition("PodScheduled", true, &s.start_time),
    ];
    if let SandboxState::Failed { message, .. } = &s.sandbox {
        conditions[0].reason = Some("SandboxSetupFailed".into());
        conditions[0].message = Some(message.clone());
    }
    if let Some(p) = problem {
        conditions.push(Condition {
            kind: "staticlet.dev/ManifestValid".into(),
            status: "False",
            reason: Some("InvalidManifest".into()),
            message: Some(p.into()),
            last_probe_time: None,
            last_transition_time: wall.into(),
        });
    }
    if let Some(m) = rolled_back {
        conditions.push(Condition {
            kind: "staticlet.dev/RolledBack".into(),
            status: "True",
            reason: Some("CandidateUnhealthy".into()),
            message: Some(m.into()),
            last_probe_time: None,
            last_transition_time: s.start_time.clone(),
        });
    }
    let (host_ip, pod_ips) = match &s.sandbox {
        SandboxState::Ready(sb) => (sb.host_ip.clone(), sb.pod_ips.clone()),
        _ => (String::new(), Vec::new()),
    };
    PodStatus {
        pod: s.pod.clone(),
        deletion_timestamp: s.terminating.then(|| wall.to_string()),
        status: Status {
            phase: phase(s),
            reason: s.deadline_exceeded.then(|| "DeadlineExceeded".into()),
            message: s.deadline_exceeded.then(|| DEADLINE_MESSAGE.into()),
            conditions,
            host_ip,
            pod_ip: pod_ips.first().cloned().unwrap_or_default(),
            pod_ips: pod_ips.into_iter().map(|ip| PodIp { ip }).collect(),
            start_time: s.start_time.clone(),
            qos_class: qos_class(s),
            container_statuses: statuses,
            init_container_statuses: init_statuses,
        },
    }
}

/// The pod as a `v1` Pod object (what the endpoint serves).
pub fn pod_json(s: &PodState, now: Tick, wall: &str, problem: Option<&str>) -> Value {
    pod_status(s, now, wall, problem).to_json()
}

/// Guaranteed when every container sets equal cpu and memory limits and requests; BestEffort
/// when none sets anything; Burstable otherwise.
fn qos_class(s: &PodState) -> &'static str {
    let spec = &s.pod.pod.spec;
    let all: Vec<_> = spec
        .init_containers
        .iter()
        .chain(&spec.containers)
        .collect();
    if all
        .iter()
        .all(|c| c.resources.limits.is_empty() && c.resources.requests.is_empty())
    {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let l = c.resources.limits.get(*r).map(|q| q.as_text());
            l.is_some()
                && c.resources
                    .requests
                    .get(*r)
                    .map(|q| q.as_text())
                    .is_none_or(|q| Some(q) == l)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests;
