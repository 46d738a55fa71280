//! The events of a pod's life, with the kubelet's reasons and messages (pkg/kubelet/events
//! and the places that record them), so `kubectl describe` and tools that match on them read
//! a staticlet node as they read a kubelet's. Each builder stamps the current time.

use super::{Event, Subject, Type};
use crate::desired::Problem;
use crate::manifest::StaticPod;
use std::time::{Duration, SystemTime};

/// The pod as events name it (the static pod; the poster puts the mirror pod's UID in).
pub fn pod_subject(pod: &StaticPod) -> Subject {
    Subject::pod(pod.namespace(), pod.name(), pod.uid())
}

/// The container at `index` (init containers first, as the agent counts them).
pub fn container_subject(pod: &StaticPod, index: usize) -> Subject {
    let init = index < pod.pod.spec.init_containers.len();
    pod_subject(pod).container(&pod.container(index).name, init)
}

fn now(subject: Subject, kind: Type, reason: &str, message: String) -> Event {
    Event {
        subject,
        kind,
        reason: reason.into(),
        message,
        at: SystemTime::now(),
    }
}

fn of(pod: &StaticPod, index: usize, kind: Type, reason: &str, message: String) -> Event {
    now(container_subject(pod, index), kind, reason, message)
}

fn name(pod: &StaticPod, index: usize) -> &str {
    &pod.container(index).name
}

fn image(pod: &StaticPod, index: usize) -> &str {
    &pod.container(index).image
}

pub fn pulling(pod: &StaticPod, index: usize) -> Event {
    let m = format!("Pulling image {:?}", image(pod, index));
    of(pod, index, Type::Normal, "Pulling", m)
}

pub fn pulled(pod: &StaticPod, index: usize, took: Duration) -> Event {
    let m = format!(
        "Successfully pulled image {:?} in {:.3}s",
        image(pod, index),
        took.as_secs_f64()
    );
    of(pod, index, Type::Normal, "Pulled", m)
}

pub fn already_present(pod: &StaticPod, index: usize) -> Event {
    let m = format!(
        "Container image {:?} already present on machine",
        image(pod, index)
    );
    of(pod, index, Type::Normal, "Pulled", m)
}

pub fn pull_failed(pod: &StaticPod, index: usize, error: &str) -> Event {
    let m = format!("Failed to pull image {:?}: {error}", image(pod, index));
    of(pod, index, Type::Warning, "Failed", m)
}

pub fn pull_back_off(pod: &StaticPod, index: usize) -> Event {
    let m = format!("Back-off pulling image {:?}", image(pod, index));
    of(pod, index, Type::Normal, "BackOff", m)
}

/// `Error: <reason or message>`, as the kubelet reports a container that could not start.
pub fn failed(pod: &StaticPod, index: usize, error: &str) -> Event {
    of(
        pod,
        index,
        Type::Warning,
        "Failed",
        format!("Error: {error}"),
    )
}

pub fn created(pod: &StaticPod, index: usize) -> Event {
    let m = format!("Created container {}", name(pod, index));
    of(pod, index, Type::Normal, "Created", m)
}

pub fn started(pod: &StaticPod, index: usize) -> Event {
    let m = format!("Started container {}", name(pod, index));
    of(pod, index, Type::Normal, "Started", m)
}

/// A container being stopped; `why` is the agent's stop reason (a failed liveness or startup
/// probe says so, as the kubelet's message does).
pub fn killing(pod: &StaticPod, index: usize, why: Option<&str>) -> Event {
    let probe = ["liveness", "startup"]
        .into_iter()
        .find(|p| why.is_some_and(|w| w.starts_with(&format!("{p} probe failed"))));
    let m = match probe {
        Some(p) => format!(
            "Container {} failed {p} probe, will be restarted",
            name(pod, index)
        ),
        None => format!("Stopping container {}", name(pod, index)),
    };
    of(pod, index, Type::Normal, "Killing", m)
}

/// What the kubelet records when a start fails with `reason` (the container's waiting
/// reason) and `message`: a failed pull, then `Error: <reason>`, then its back-off.
pub fn start_failed(pod: &StaticPod, index: usize, reason: &str, message: &str) -> Vec<Event> {
    match reason {
        "ErrImagePull" => vec![
            pull_failed(pod, index, message),
            failed(pod, index, reason),
            pull_back_off(pod, index),
        ],
        "ErrImageNeverPull" => vec![
            of(pod, index, Type::Warning, reason, message.to_string()),
            failed(pod, index, reason),
        ],
        _ => vec![failed(pod, index, message)],
    }
}

pub fn back_off(pod: &StaticPod, index: usize) -> Event {
    let m = "Back-off restarting failed container".to_string();
    of(pod, index, Type::Warning, "BackOff", m)
}

/// `kind` is `liveness`, `readiness` or `startup`.
pub fn unhealthy(pod: &StaticPod, index: usize, kind: &str, output: &str) -> Event {
    let mut chars = kind.chars();
    let kind: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect();
    let m = format!("{kind} probe failed: {output}");
    of(pod, index, Type::Warning, "Unhealthy", m)
}

/// The pod's shared parts (namespaces, volumes, `/etc` files) could not be set up. A volume
/// is FailedMount, as the kubelet's volume manager reports it; the rest is the sandbox.
pub fn setup_failed(pod: &StaticPod, error: &str) -> Event {
    let volume = error.contains("volume");
    let (reason, m) = if volume {
        ("FailedMount", format!("MountVolume.SetUp failed: {error}"))
    } else {
        (
            "FailedCreatePodSandBox",
            format!("Failed to create pod sandbox: {error}"),
        )
    };
    now(pod_subject(pod), Type::Warning, reason, m)
}

pub fn sandbox_changed(pod: &StaticPod) -> Event {
    let m = "Pod sandbox changed, it will be killed and re-created.".to_string();
    now(pod_subject(pod), Type::Normal, "SandboxChanged", m)
}

/// The pod's manifest changed into one that cannot be used: the last good version keeps
/// running (staticlet's own reason; the kubelet would stop the pod instead).
pub fn manifest_refused(pod: &StaticPod, origin: &str, error: &str) -> Event {
    let m = format!("{origin}: {error}; the last good version keeps running");
    now(pod_subject(pod), Type::Warning, "FailedManifest", m)
}

/// A `FailedManifest` for each problem in `new` that was not in `old` and names a pod still
/// running from its last good version (one of `pods`).
pub fn refused_manifests<'a>(
    old: &[Problem],
    new: &[Problem],
    pods: impl Iterator<Item = &'a StaticPod>,
) -> Vec<Event> {
    let fresh: Vec<&Problem> = new
        .iter()
        .filter(|p| p.pod.is_some() && !old.contains(p))
        .collect();
    if fresh.is_empty() {
        return Vec::new();
    }
    let pods: Vec<&StaticPod> = pods.collect();
    fresh
        .into_iter()
        .filter_map(|pr| {
            let pod = pods
                .iter()
                .find(|p| pr.pod.as_deref() == Some(p.full_name().as_str()))?;
            Some(manifest_refused(pod, &pr.origin, &pr.message))
        })
        .collect()
}

/// The node agent started (the kubelet's `Starting` on its Node).
pub fn starting(node: &str) -> Event {
    let m = format!("Starting staticlet {}.", env!("CARGO_PKG_VERSION"));
    now(Subject::node(node), Type::Normal, "Starting", m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{load, Source};

    fn pod() -> StaticPod {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec:\n  initContainers: [{name: init, image: busybox}]\n  containers: [{name: main, image: busybox}]\n";
        load(
            yaml.as_bytes(),
            &Source::File("/m/web.yaml".into()),
            "node1",
        )
        .unwrap()
    }

    #[test]
    fn the_kubelet_s_reasons_messages_and_field_paths() {
        let p = pod();
        let init = started(&p, 0);
        assert_eq!(
            init.subject.field_path.as_deref(),
            Some("spec.initContainers{init}")
        );
        assert_eq!(init.subject.name, "web-node1");
        assert_eq!(init.subject.uid, p.uid());
        let main = started(&p, 1);
        assert_eq!(
            main.subject.field_path.as_deref(),
            Some("spec.containers{main}")
        );
        assert_eq!(main.message, "Started container main");

        let pull: Vec<(String, String)> = start_failed(&p, 1, "ErrImagePull", "connection refused")
            .into_iter()
            .map(|e| (e.reason, e.message))
            .collect();
        assert_eq!(
            pull,
            [
                (
                    "Failed".into(),
                    "Failed to pull image \"busybox\": connection refused".into()
                ),
                ("Failed".into(), "Error: ErrImagePull".into()),
                (
                    "BackOff".into(),
                    "Back-off pulling image \"busybox\"".into()
                ),
            ]
        );
        let k = killing(&p, 1, Some("liveness probe failed: HTTP 500"));
        assert_eq!(
            k.message,
            "Container main failed liveness probe, will be restarted"
        );
        assert_eq!(
            killing(&p, 1, Some("pod stopping")).message,
            "Stopping container main"
        );
        let u = unhealthy(&p, 1, "readiness", "connection refused");
        assert_eq!(
            (u.kind, u.message.as_str()),
            (Type::Warning, "Readiness probe failed: connection refused")
        );
        assert_eq!(
            setup_failed(&p, "volume data: no such directory").reason,
            "FailedMount"
        );
        assert_eq!(
            setup_failed(&p, "netns: EPERM").reason,
            "FailedCreatePodSandBox"
        );
    }

    #[test]
    fn a_refused_manifest_is_an_event_once_per_new_problem() {
        let p = pod();
        let problem = Problem {
            origin: "/m/web.yaml".into(),
            pod: Some(p.full_name()),
            message: "spec.containers[0].image: Required value".into(),
            whole_source: false,
        };
        let e = refused_manifests(&[], std::slice::from_ref(&problem), [&p].into_iter());
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].reason, "FailedManifest");
        assert!(
            e[0].message.contains("the last good version keeps running"),
            "{}",
            e[0].message
        );
        let again = refused_manifests(
            std::slice::from_ref(&problem),
            std::slice::from_ref(&problem),
            [&p].into_iter(),
        );
        assert!(again.is_empty());
    }
}
