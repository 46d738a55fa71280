//! One step of the loop: plan every pod and run the actions as tasks.

use super::{actions, sandbox, Agent};
use crate::reconcile::{plan, Action, SandboxState, Tick};
use crate::runtime::podsetup::Sandbox;

impl Agent {
    /// Plans every pod and runs the actions; returns the earliest wake-up any pod asked for.
    pub(super) fn step(&mut self) -> Option<Tick> {
        let now = self.now();
        let mut wake: Option<Tick> = None;
        // Names whose previous version still has containers running.
        let stopping_names: std::collections::HashSet<String> = self
            .pods
            .values()
            .filter(|p| p.terminating && !p.all_stopped())
            .map(|p| p.pod.full_name())
            .collect();
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            let p = &self.pods[&uid];
            // A replaced pod's successor prepares its sandbox at once but starts no container
            // until the old version's containers have stopped (ports, files); the old pod's
            // teardown does not hold it up. Every exit event plans again.
            let held = !p.terminating && stopping_names.contains(&p.pod.full_name());
            let plan = plan(p, now);
            if let Some(w) = plan.wake {
                wake = Some(wake.map_or(w, |x: Tick| x.min(w)));
            }
            for action in plan.actions {
                if held && matches!(action, Action::Start { .. }) {
                    continue;
                }
                if matches!(action, Action::Start { .. }) {
                    match self.sandbox_lost(&uid) {
                        None => {}
                        Some(changed) => {
                            // Plan the pod again at once when that changed its state (stop
                            // what runs in the lost sandbox, or set it up again); while its
                            // containers are still stopping, their exits will.
                            if changed {
                                wake = Some(now);
                            }
                            continue;
                        }
                    }
                }
                self.execute(&uid, action);
            }
        }
        wake
    }

    /// Whether the pod's sandbox, set up before, has lost a part since: checked before each
    /// start, and acted on (see [`sandbox::on_lost`]). `None`: intact (or not set up, which
    /// `execute` handles); `Some(changed)`: lost, and whether the pod's state changed.
    fn sandbox_lost(&mut self, uid: &str) -> Option<bool> {
        let pod_dir = self.ctx.layout.pod(uid);
        let p = self.pods.get_mut(uid)?;
        let SandboxState::Ready(sb) = &p.sandbox else {
            return None;
        };
        let what = sandbox::check(sb, &pod_dir).err()?;
        let changed = sandbox::on_lost(p, &what);
        if changed {
            crate::events::EventSink::record(
                &*self.ctx.recorder,
                crate::events::kubelet::sandbox_changed(&p.pod),
            );
        }
        Some(changed)
    }

    fn execute(&mut self, uid: &str, action: Action) {
        let ctx = self.ctx.clone();
        let ex = self.ex.clone();
        let spawn =
            |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>| ex.spawn(f).detach();
        let p = self.pods.get_mut(uid).expect("planned pods exist");
        match action {
            Action::SetupSandbox => {
                p.sandbox = SandboxState::SettingUp;
                let pod = p.pod.clone();
                spawn(Box::pin(actions::setup(ctx, pod)));
            }
            Action::Start { index, attempt } => {
                // Not ready when an earlier start of this plan found the sandbox lost.
                if !matches!(p.sandbox, SandboxState::Ready(_)) {
                    return;
                }
                p.on_starting(index);
                let SandboxState::Ready(sb) = &p.sandbox else {
                    return;
                };
                spawn(Box::pin(actions::start(
                    ctx,
                    p.pod.clone(),
                    sb.clone(),
                    index,
                    attempt,
                )));
            }
            Action::Stop { index, grace } => {
                let c = &mut p.containers[index];
                c.stopping = true;
                let Some(running) = c.running.clone() else {
                    return;
                };
                let reason = c
                    .stop_reason
                    .clone()
                    .unwrap_or_else(|| "pod stopping".into());
                log::debug!(
                    "{}/{}: stopping ({reason}), grace {}s",
                    p.pod.full_name(),
                    c.name,
                    grace.as_secs()
                );
                crate::events::EventSink::record(
                    &*ctx.recorder,
                    crate::events::kubelet::killing(&p.pod, index, Some(&reason)),
                );
                let sb = match &p.sandbox {
                    SandboxState::Ready(sb) => sb.clone(),
                    _ => Sandbox::default(),
                };
                spawn(Box::pin(actions::stop(
                    ctx,
                    p.pod.clone(),
                    sb,
                    index,
                    running,
                    grace,
                )));
            }
            Action::Probe { index, kind } => {
                p.on_probe_started(index, kind);
                let (Some(running), SandboxState::Ready(sb)) =
                    (p.containers[index].running.clone(), &p.sandbox)
                else {
                    return;
                };
                spawn(Box::pin(actions::probe(
                    ctx,
                    p.pod.clone(),
                    sb.clone(),
                    index,
                    kind,
                    running,
                )));
            }
            Action::Teardown => {
                p.sandbox = SandboxState::TearingDown;
                spawn(Box::pin(actions::teardown(ctx, p.pod.clone())));
            }
        }
    }
}
