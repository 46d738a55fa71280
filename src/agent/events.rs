//! Applying events to the agent's state: source snapshots, container starts and exits,
//! probe answers; and keeping the pod map in line with the desired set.

use super::{recover, Agent, Event};
use crate::desired::log_problem_changes;
use crate::events::{kubelet, EventSink};
use crate::reconcile::{PodState, Tick};
use crate::runtime::ExitRecord;

impl Agent {
    pub(super) fn on_event(&mut self, event: Event) {
        let now = self.now();
        let wall = crate::timefmt::now_rfc3339();
        match event {
            Event::Snapshot(snap) => {
                self.desired.apply(snap, &wall);
                self.sync_desired(&wall);
            }
            Event::SetupDone { uid, result } => {
                if let Some(p) = self.pods.get_mut(&uid) {
                    if let Err(e) = &result {
                        log::warn!("{}: cannot set up the pod: {e}", p.pod.full_name());
                        self.ctx.recorder.record(kubelet::setup_failed(&p.pod, e));
                    }
                    p.on_setup(result, now);
                }
            }
            Event::Started {
                uid,
                index,
                result,
                latency,
            } => {
                let Some(p) = self.pods.get_mut(&uid) else {
                    return;
                };
                let name = format!("{}/{}", p.pod.full_name(), p.containers[index].name);
                match result {
                    Ok(running) => {
                        let restart = p.containers[index].ever_started;
                        log::info!(
                            "{name}: {} (pid {}, attempt {})",
                            if restart { "restarted" } else { "started" },
                            running.pid,
                            running.attempt
                        );
                        self.ctx.recorder.record_all(vec![
                            kubelet::created(&p.pod, index),
                            kubelet::started(&p.pod, index),
                        ]);
                        p.on_started(index, running, now);
                        self.start_latency.observe(latency.as_secs_f64());
                    }
                    Err(f) => {
                        // Logged once per state: a retry that fails the same way (the first
                        // retry comes at once) is no news.
                        let same = p.containers[index].waiting.as_ref()
                            == Some(&(f.reason.clone(), f.message.clone()));
                        if same {
                            log::debug!("{name}: still cannot start: {}", f.reason);
                        } else {
                            log::warn!("{name}: cannot start: {}: {}", f.reason, f.message);
                        }
                        self.ctx.recorder.record_all(kubelet::start_failed(
                            &p.pod, index, &f.reason, &f.message,
                        ));
                        p.on_start_failed(index, f, now, &wall);
                    }
                }
                let p = &self.pods[&uid];
                recover::save_container(&self.ctx.layout, p, index);
            }
            Event::Exit(rec) => self.on_exit(rec, now),
            Event::Stopped { uid, index } => {
                if let Some(p) = self.find(&uid) {
                    p.on_stopped(index);
                }
            }
            Event::Probe {
                uid,
                index,
                kind,
                success,
                message,
            } => {
                let Some(p) = self.pods.get_mut(&uid) else {
                    return;
                };
                let was_ready = p.containers[index].ready;
                if !success {
                    self.ctx.recorder.record(kubelet::unhealthy(
                        &p.pod,
                        index,
                        kind.name(),
                        &message,
                    ));
                }
                if let Some(why) = p.on_probe(index, kind, success, &message, now) {
                    log::warn!(
                        "{}/{}: {why}; restarting it",
                        p.pod.full_name(),
                        p.containers[index].name
                    );
                }
                let c = &p.containers[index];
                if c.ready != was_ready {
                    log::info!(
                        "{}/{}: {}",
                        p.pod.full_name(),
                        c.name,
                        if c.ready { "ready" } else { "not ready" }
                    );
                }
            }
            Event::TornDown { uid } => {
                if let Some(p) = self.pods.remove(&uid) {
                    log::info!("{}: stopped and removed", p.pod.full_name());
                    self.ctx.recorder.forget_pod(&uid);
                    self.trim_at = Some(now + super::TRIM_AFTER);
                }
                self.sync_desired(&wall);
            }
            Event::Shutdown => {}
        }
    }

    fn on_exit(&mut self, rec: ExitRecord, now: Tick) {
        let exit_file = self.ctx.layout.exit_file(&rec.id);
        let instance = self
            .ctx
            .layout
            .instance(&rec.pod_uid, &rec.container, rec.attempt);
        let matched = self.pods.get_mut(&rec.pod_uid).and_then(|p| {
            let index = p.containers.iter().position(|c| c.name == rec.container)?;
            let was_running = p.containers[index]
                .running
                .as_ref()
                .is_some_and(|r| r.attempt == rec.attempt);
            p.on_exit(index, &rec, now);
            was_running.then_some(index)
        });
        if let Some(index) = matched {
            let p = &self.pods[&rec.pod_uid];
            let c = &p.containers[index];
            let t = c.last.as_ref().expect("on_exit records a termination");
            let next = if c.init && t.exit_code == 0 {
                "done".to_string()
            } else if p.finished(c) {
                "not restarted (restartPolicy)".to_string()
            } else if p.terminating || c.stopping {
                "stopped".to_string()
            } else {
                match c.backoff.until.map(|u| u.saturating_sub(now)) {
                    Some(d) if !d.is_zero() => {
                        self.ctx.recorder.record(kubelet::back_off(&p.pod, index));
                        format!("restarting in {}s", d.as_secs())
                    }
                    _ => "restarting".to_string(),
                }
            };
            log::info!(
                "{}/{}: exited with code {} ({}); {next}",
                p.pod.full_name(),
                c.name,
                t.exit_code,
                t.reason
            );
            recover::save_container(&self.ctx.layout, p, index);
        }
        // The instance is finished either way: remove the crun container, its rootfs and
        // bundle, then the record (last, so a crash in between redoes the cleanup).
        let ctx = self.ctx.clone();
        self.spawn(async move {
            let _ = ctx.crun.delete(&rec.id).await;
            crate::agent::blocking::run_logged("releasing a finished container", move || {
                crate::runtime::podsetup::release_instance(&instance)
            })
            .await;
            let _ = std::fs::remove_file(exit_file);
        });
    }

    /// Brings the pod map in line with the desired set: new pods are added, removed or
    /// replaced ones are marked terminating.
    pub(super) fn sync_desired(&mut self, wall: &str) {
        let desired = self.desired.desired();
        log_problem_changes(&self.problems, &desired.problems);
        self.ctx.recorder.record_all(kubelet::refused_manifests(
            &self.problems,
            &desired.problems,
            self.pods
                .values()
                .filter(|p| !p.terminating)
                .map(|p| &*p.pod),
        ));
        self.problems = desired.problems.clone();
        let wanted: std::collections::HashSet<&str> =
            desired.pods.values().map(|p| p.uid()).collect();
        for p in self.pods.values_mut() {
            if !p.terminating
                && !wanted.contains(p.uid())
                && (desired.complete || desired.pods.contains_key(&p.pod.full_name()))
            {
                log::info!(
                    "{}: manifest {}; stopping it",
                    p.pod.full_name(),
                    if desired.pods.contains_key(&p.pod.full_name()) {
                        "changed"
                    } else {
                        "removed"
                    }
                );
                p.terminating = true;
            }
        }
        for pod in desired.pods.values() {
            if !self.pods.contains_key(pod.uid()) {
                log::info!("{}: new pod from {}", pod.full_name(), pod.source);
                self.pods.insert(
                    pod.uid().to_string(),
                    PodState::new(pod.clone(), wall.to_string()),
                );
            }
        }
    }
}
