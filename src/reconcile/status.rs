//! Status computation: a pod's state becomes a `v1` Pod with the status the kubelet would
//! report (phase, conditions, container statuses). Pure: the wall-clock time is passed in.

use super::{ContainerState, PodState, SandboxState, Terminated, Tick};
use serde_json::{json, Value};

fn terminated_json(t: &Terminated, id: Option<String>) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "finishedAt": t.finished_at,
    });
    if let Some(s) = t.signal {
        v["signal"] = json!(s);
    }
    if let Some(m) = &t.message {
        v["message"] = json!(m);
    }
    if let Some(s) = &t.started_at {
        v["startedAt"] = json!(s);
    }
    if let Some(id) = id {
        v["containerID"] = json!(id);
    }
    v
}

fn container_json(
    s: &PodState,
    index: usize,
    c: &ContainerState,
    now: Tick,
    init_pending: bool,
) -> Value {
    let spec = s.spec_of(index);
    let state = if let Some(r) = c.running() {
        json!({"running": {"startedAt": r.started_at}})
    } else if s.finished(c) || (s.terminating && c.last.is_some()) {
        match &c.last {
            Some(t) => json!({"terminated": terminated_json(t, None)}),
            None => json!({"waiting": {"reason": "ContainerCreating"}}),
        }
    } else if c.backoff.waiting(now) && c.last.is_some() {
        let delay = c
            .backoff
            .delay
            .map(|d| (d / 2).as_secs().max(10))
            .unwrap_or(10);
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
            "back-off {delay}s restarting failed container={} pod={}_{}({})", c.name, s.pod.name(), s.pod.namespace(), s.pod.uid())}})
    } else if let Some((reason, message)) = &c.waiting {
        // After the first failed pull, the kubelet shows the backoff.
        let reason = if reason == "ErrImagePull" && c.backoff.waiting(now) {
            "ImagePullBackOff"
        } else {
            reason.as_str()
        };
        json!({"waiting": {"reason": reason, "message": message}})
    } else if init_pending && !c.init {
        json!({"waiting": {"reason": "PodInitializing"}})
    } else {
        json!({"waiting": {"reason": "ContainerCreating"}})
    };
    let mut v = json!({
        "name": c.name,
        "image": spec.image,
        "imageID": "",
        "ready": c.ready && c.running().is_some(),
        "started": c.started && c.running().is_some(),
        "restartCount": c.restart_count,
        "state": state,
    });
    if let Some(r) = c.running() {
        v["containerID"] = json!(format!("crun://{}", r.id));
    }
    if let (Some(t), false) = (&c.last, state_is_terminated(&v)) {
        v["lastState"] = json!({"terminated": terminated_json(t, None)});
    }
    v
}

fn state_is_terminated(v: &Value) -> bool {
    v["state"].get("terminated").is_some()
}

/// The pod's phase, by the kubelet's rules.
pub fn phase(s: &PodState) -> &'static str {
    if s.init_failed() {
        return "Failed";
    }
    let apps: Vec<&ContainerState> = s.containers.iter().filter(|c| !c.init).collect();
    if apps.iter().all(|c| s.finished(c)) && !apps.is_empty() {
        return if apps
            .iter()
            .all(|c| c.last.as_ref().is_some_and(|t| t.exit_code == 0))
        {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if apps.iter().any(|c| c.running().is_some() || c.ever_started) {
        "Running"
    } else {
        "Pending"
    }
}

impl PodState {
    /// Whether every app container runs and is ready: the Ready and ContainersReady value.
    pub fn ready(&self) -> bool {
        self.containers
            .iter()
            .filter(|c| !c.init)
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

fn condition(kind: &str, ok: bool, now: &str) -> Value {
    json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now})
}

/// The pod as a `v1` Pod object. `problem` is a manifest error to show on the pod (its last
/// good version is what runs); `extra_conditions` come from other stages (mirror sync).
pub fn pod_json(s: &PodState, now: Tick, wall: &str, problem: Option<&str>) -> Value {
    let init_pending = s
        .containers
        .iter()
        .any(|c| c.init && !(s.finished(c) && c.last.as_ref().is_some_and(|t| t.exit_code == 0)));
    let mut init_statuses = Vec::new();
    let mut statuses = Vec::new();
    for (i, c) in s.containers.iter().enumerate() {
        let v = container_json(s, i, c, now, init_pending);
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
        conditions[0]["reason"] = json!("SandboxSetupFailed");
        conditions[0]["message"] = json!(message);
    }
    if let Some(p) = problem {
        conditions.push(json!({"type": "staticlet.dev/ManifestValid", "status": "False", "reason": "InvalidManifest", "message": p, "lastTransitionTime": wall}));
    }
    let (host_ip, pod_ip) = match &s.sandbox {
        SandboxState::Ready(sb) => (sb.host_ip.clone(), sb.pod_ip.clone()),
        _ => (String::new(), String::new()),
    };
    let mut status = json!({
        "phase": phase(s),
        "conditions": conditions,
        "hostIP": host_ip,
        "startTime": s.start_time,
        "qosClass": qos_class(s),
        "containerStatuses": statuses,
    });
    if !pod_ip.is_empty() {
        status["podIP"] = json!(pod_ip);
        status["podIPs"] = json!([{"ip": pod_ip}]);
    }
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    let mut pod = s.pod.raw.clone();
    pod["status"] = status;
    if s.terminating {
        pod["metadata"]["deletionTimestamp"] = json!(wall);
    }
    pod
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
