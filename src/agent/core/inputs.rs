//! Applying one input to the core's state: a source update, a runtime result, an exit, a
//! probe answer. Each guards on the container's phase, so a late or stale report (an older
//! attempt, a launch already abandoned) is ignored. Log lines and Events are made here,
//! where it is known what happened.

use super::start::{back_off, created, launched, start_failed};
use super::{event, save, Command, Core, Input, Now, Output};
use crate::agent::event::EventKind::Warning;
use crate::reconcile::{Phase, PodState, ProbeKind, Tick};
use crate::runtime::{ExitRecord, HandlerResult, StartError, StopOutcome};

/// Why a container was stopped because its pod sandbox went away.
pub const SANDBOX_GONE: &str = "its pod sandbox is gone";

/// How long the exit record of a container that was stopped is waited for. A monitor
/// writes it before it ends, and a stop waits for the monitor: it is only on its way.
pub const EXIT_RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn apply(core: &mut Core, input: Input, now: Now, out: &mut Output) {
    match input {
        Input::Sources(snap) => {
            core.desired.apply(snap, &now.wall_text());
            core.sync_desired(now, out);
        }
        Input::SandboxReady { uid, result } => {
            let Some(p) = core.pods.get_mut(&uid) else {
                return;
            };
            match result {
                Ok(sb) => p.on_setup(sb),
                Err(e) => {
                    log::warn!("{}: cannot set up the pod: {e}", p.pod.full_name());
                    let message = e.to_string();
                    out.commands
                        .push(event(p, None, Warning, e.reason(), message.clone(), now));
                    p.on_setup_failed(message, now.tick);
                }
            }
        }
        Input::Created {
            uid,
            index,
            attempt,
            result,
        } => created(core, &uid, index, attempt, result, now, out),
        Input::Launched {
            uid,
            index,
            attempt,
            result,
        } => launched(core, &uid, index, attempt, result, now, out),
        Input::Abandoned {
            uid,
            index,
            attempt,
            result,
        } => {
            let timeout = core.config.runtime_request_timeout;
            let Some(p) = core.pods.get_mut(&uid) else {
                return;
            };
            if !matches!(p.containers.get(index).map(|c| &c.phase), Some(Phase::Abandoning { attempt: a }) if *a == attempt)
            {
                return;
            }
            let e = result.err().unwrap_or(StartError::TimedOut(timeout));
            start_failed(p, index, &e, now, out);
        }
        Input::Exited(rec) => exited(core, rec, now, out),
        Input::Stopped {
            uid,
            index,
            outcome,
        } => {
            if let Some(p) = core.pods.get_mut(&uid) {
                stopped(p, index, &outcome, now, out);
            }
        }
        Input::Probed {
            uid,
            index,
            kind,
            result,
        } => {
            if let Some(p) = core.pods.get_mut(&uid) {
                probed(p, index, kind, &result, now, out);
            }
        }
        Input::PostStarted {
            uid,
            index,
            attempt,
            result,
        } => {
            let Some(p) = core.pods.get_mut(&uid) else {
                return;
            };
            if !p.on_post_started(index, attempt, result.success, &result.message) {
                return;
            }
            let name = p.container_name(index);
            if result.success {
                log::info!("{name}: postStart hook done");
            } else {
                log::warn!(
                    "{name}: postStart hook failed: {}; killing it",
                    result.message
                );
                // The kubelet keeps the hook's output out of the Event (it may hold secrets).
                out.commands.push(event(
                    p,
                    Some(index),
                    Warning,
                    "FailedPostStartHook",
                    "PostStartHook failed".into(),
                    now,
                ));
            }
        }
        Input::TornDown { uid, result } => {
            if let Some(p) = core.pods.remove(&uid) {
                match result {
                    Ok(()) => log::info!("{}: stopped and removed", p.pod.full_name()),
                    Err(e) => log::warn!("{}: stopped; {e}", p.pod.full_name()),
                }
                out.removed.push(uid.clone());
            }
            core.sync_desired(now, out);
        }
        Input::Timer => {}
        Input::Shutdown => {
            log::info!(
                "shutting down; containers keep running and will be adopted at the next start"
            );
            out.commands.push(Command::Shutdown);
        }
    }
}

pub fn exited(core: &mut Core, rec: ExitRecord, now: Now, out: &mut Output) {
    if let Some(p) = core.pods.get_mut(&rec.pod_uid) {
        if let Some(index) = p.containers.iter().position(|c| c.name == rec.container) {
            // The monitor reported the exit before the agent had the launch's report: kept
            // for the launch's result (the two come by different ways).
            let phase = &p.containers[index].phase;
            if matches!(phase, Phase::Launching { attempt, .. } if *attempt == rec.attempt) {
                log::debug!(
                    "{}: exit of attempt {} came before its launch's report",
                    p.container_name(index),
                    rec.attempt
                );
                p.containers[index].early_exit = Some(rec);
                return;
            }
            let stopping = matches!(
                p.containers[index].phase,
                Phase::Stopping(_) | Phase::Ended { .. }
            );
            if p.on_exit(index, &rec, now.tick) {
                log_exit(p, index, stopping, now.tick);
                back_off(p, index, now, out);
                out.commands.extend(save(p, index));
            }
        }
    }
    // The instance is finished either way: free what it used.
    out.commands.push(Command::Release(rec));
}

fn log_exit(p: &PodState, index: usize, stopping: bool, now: Tick) {
    let c = &p.containers[index];
    let Some(t) = c.last.as_ref() else { return };
    let next = if c.init && t.exit_code == 0 {
        "done".to_string()
    } else if p.finished(c) {
        "not restarted (restartPolicy)".to_string()
    } else if p.terminating || stopping {
        "stopped".to_string()
    } else {
        match c.backoff.until.map(|u| u.saturating_sub(now)) {
            Some(d) if !d.is_zero() => format!("restarting in {}s", d.as_secs()),
            _ => "restarting".to_string(),
        }
    };
    log::info!(
        "{}: exited with code {} ({}); {next}",
        p.container_name(index),
        t.exit_code,
        t.reason
    );
}

fn stopped(p: &mut PodState, index: usize, outcome: &StopOutcome, now: Now, out: &mut Output) {
    let name = p.container_name(index);
    if let Some(m) = &outcome.pre_stop_failed {
        log::warn!("{name}: preStop hook failed: {m}");
        out.commands.push(event(
            p,
            Some(index),
            Warning,
            "FailedPreStopHook",
            format!("PreStopHook failed: {m}"),
            now,
        ));
    }
    if outcome.killed {
        log::info!(
            "{name}: still running after {}s grace; killing it",
            p.grace().as_secs()
        );
    }
    if !outcome.gone {
        log::warn!("{name}: still there after SIGKILL; trying again");
    }
    p.on_stopped(index, outcome.gone, now.tick, EXIT_RECORD_WAIT);
}

fn probed(
    p: &mut PodState,
    index: usize,
    kind: ProbeKind,
    result: &HandlerResult,
    now: Now,
    out: &mut Output,
) {
    let Some(was_ready) = p.containers.get(index).map(|c| c.ready) else {
        return;
    };
    let name = p.container_name(index);
    if !result.success && p.containers[index].running().is_some() {
        let mut kind_name = kind.name().to_string();
        if let Some(first) = kind_name.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        out.commands.push(event(
            p,
            Some(index),
            Warning,
            "Unhealthy",
            format!("{kind_name} probe failed: {}", result.message),
            now,
        ));
    }
    // The stop that follows a failed liveness or startup probe says why (a Killing event).
    if let Some(why) = p.on_probe(index, kind, result.success, &result.message, now.tick) {
        log::warn!("{name}: {why}; restarting it");
    }
    let c = &p.containers[index];
    if c.ready != was_ready {
        log::info!("{name}: {}", if c.ready { "ready" } else { "not ready" });
    }
}

/// A stopped container whose exit record never came: ended with an unknown status, and
/// freed as if the record had come.
pub fn exit_lost(p: &mut PodState, index: usize, now: Now, out: &mut Output) {
    let Some(rec) = p.on_exit_lost(index, now.tick, &now.wall_text()) else {
        return;
    };
    log::warn!(
        "{}: stopped, but its exit record did not come; taking it as ended",
        p.container_name(index)
    );
    back_off(p, index, now, out);
    out.commands.extend(save(p, index));
    out.commands.push(Command::Release(rec));
}
