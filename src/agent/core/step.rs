//! One planning step over every pod: the pure per-pod plan ([`crate::reconcile::plan`]),
//! the rules that span pods, and the actions turned into commands with the state changes
//! they imply (a start in flight, a stop in flight, a sandbox being set up).

use super::{event, Command, Core, Now, Output};
use crate::agent::event::EventKind::Normal;
use crate::reconcile::{plan, probe_of, Action, PodState, SandboxState};
use crate::runtime::{HandlerSpec, InstanceSpec, StopSpec};
use std::collections::HashSet;
use std::time::Duration;

use crate::reconcile::status::DEADLINE_MESSAGE;

pub fn step(core: &mut Core, now: Now, out: &mut Output) {
    // Names whose previous version still has containers running.
    let stopping_names: HashSet<String> = core
        .pods
        .values()
        .filter(|p| p.terminating && !p.all_stopped())
        .map(|p| p.pod.full_name())
        .collect();
    for p in core.pods.values_mut() {
        // A lost sandbox whose containers have all stopped is set up again.
        if matches!(p.sandbox, SandboxState::Lost { .. }) && p.all_stopped() {
            log::debug!("{}: setting the pod sandbox up again", p.pod.full_name());
            p.sandbox = SandboxState::Missing;
        }
        // A replaced pod's successor prepares its sandbox at once but starts no container
        // until the old version's containers have stopped (ports, files); the old pod's
        // teardown does not hold it up. Every exit plans again.
        let held = !p.terminating && stopping_names.contains(&p.pod.full_name());
        let plan = plan(p, now.tick);
        if let Some(w) = plan.wake {
            out.wake_at(w);
        }
        for action in plan.actions {
            if held && matches!(action, Action::Start { .. }) {
                continue;
            }
            execute(p, action, core.config.runtime_request_timeout, now, out);
        }
    }
}

fn execute(p: &mut PodState, action: Action, timeout: Duration, now: Now, out: &mut Output) {
    match action {
        Action::SetupSandbox => {
            p.sandbox = SandboxState::SettingUp;
            out.commands.push(Command::SetupSandbox(p.pod.clone()));
        }
        Action::Start { index, attempt } => {
            let SandboxState::Ready(sb) = &p.sandbox else {
                return;
            };
            let spec = InstanceSpec {
                pod: p.pod.clone(),
                sandbox: sb.clone(),
                index,
                attempt,
            };
            p.on_creating(index, attempt, now.tick);
            out.commands.push(Command::Create(spec));
        }
        Action::Abandon { index } => {
            let Some(sandbox) = p.sandbox.paths().cloned() else {
                return;
            };
            let Some(attempt) = p.on_abandoning(index) else {
                return;
            };
            log::warn!(
                "{}: the runtime has not started the container after {}s; stopping that attempt",
                p.container_name(index),
                timeout.as_secs()
            );
            out.commands.push(Command::Abandon(InstanceSpec {
                pod: p.pod.clone(),
                sandbox,
                index,
                attempt,
            }));
            if let Some(rec) = p.containers[index].early_exit.take() {
                out.commands.push(Command::Release(rec));
            }
        }
        Action::Stop { index, grace } => {
            let sandbox = p.sandbox.paths().cloned().unwrap_or_default();
            let reason = p.containers[index]
                .stop_reason
                .clone()
                .unwrap_or_else(|| "pod stopping".into());
            let Some(running) = p.on_stopping(index) else {
                return;
            };
            log::debug!(
                "{}: stopping ({reason}), grace {}s",
                p.container_name(index),
                grace.as_secs()
            );
            let c = p.spec_of(index);
            let lifecycle = c.lifecycle.as_ref();
            let pre_stop = lifecycle
                .and_then(|l| l.pre_stop.clone())
                .map(|handler| HandlerSpec {
                    pod: p.pod.clone(),
                    sandbox,
                    index,
                    running: running.clone(),
                    handler,
                    timeout: grace,
                });
            let spec = StopSpec {
                id: running.id.clone(),
                wait_pid: running.monitor_pid,
                signal: lifecycle
                    .and_then(|l| l.stop_signal.clone())
                    .unwrap_or_else(|| "SIGTERM".into()),
                grace,
                pre_stop,
            };
            let name = p.containers[index].name.clone();
            let probe = reason.split_once(" probe failed").map(|(kind, _)| kind);
            let message = match probe {
                Some(kind) if !p.terminating => {
                    format!("Container {name} failed {kind} probe, will be restarted")
                }
                _ => format!("Stopping container {name}"),
            };
            out.commands
                .push(event(p, Some(index), Normal, "Killing", message, now));
            out.commands.push(Command::Stop {
                uid: p.uid().to_string(),
                index,
                spec,
            });
        }
        Action::Probe { index, kind } => {
            let (Some(running), Some(sandbox)) = (
                p.containers[index].running().cloned(),
                p.sandbox.paths().cloned(),
            ) else {
                return;
            };
            let Some(probe) = probe_of(p.spec_of(index), kind) else {
                return;
            };
            let spec = HandlerSpec {
                pod: p.pod.clone(),
                sandbox,
                index,
                running,
                handler: probe.handler.clone(),
                timeout: Duration::from_secs(probe.timeout().max(1) as u64),
            };
            p.on_probe_started(index, kind);
            out.commands.push(Command::Probe {
                uid: p.uid().to_string(),
                index,
                kind,
                spec,
            });
        }
        Action::PostStart { index } => {
            let (Some(running), Some(sandbox)) = (
                p.containers[index].running().cloned(),
                p.sandbox.paths().cloned(),
            ) else {
                return;
            };
            let Some(handler) = p
                .spec_of(index)
                .lifecycle
                .as_ref()
                .and_then(|l| l.post_start.clone())
            else {
                return;
            };
            let attempt = running.attempt;
            let spec = HandlerSpec {
                pod: p.pod.clone(),
                sandbox,
                index,
                running,
                handler,
                timeout,
            };
            p.on_post_start(index);
            out.commands.push(Command::PostStart {
                uid: p.uid().to_string(),
                index,
                attempt,
                spec,
            });
        }
        Action::ExitLost { index } => super::inputs::exit_lost(p, index, now, out),
        Action::DeadlineExceeded => {
            p.deadline_exceeded = true;
            log::info!(
                "{}: active longer than its activeDeadlineSeconds ({}s); stopping it for good",
                p.pod.full_name(),
                p.pod.pod.spec.active_deadline_seconds.unwrap_or_default()
            );
            out.commands.push(event(
                p,
                None,
                Normal,
                "DeadlineExceeded",
                DEADLINE_MESSAGE.into(),
                now,
            ));
        }
        Action::Teardown => {
            p.sandbox = SandboxState::TearingDown;
            out.commands.push(Command::Teardown(p.pod.clone()));
        }
    }
}
