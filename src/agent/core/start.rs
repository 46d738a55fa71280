//! A container's start as the core follows it: created (image and bundle ready: the
//! `Pulled` and `Created` events, then the launch with its deadline), launched (`Started`),
//! or failed (logged once per state, shown as the waiting reason, backed off); and a
//! sandbox that a create found gone.

use super::inputs::SANDBOX_GONE;
use super::{event, save, Command, Core, Now, Output};
use crate::agent::event::EventKind::{Normal, Warning};
use crate::reconcile::{Phase, PodState, SandboxState, StartFailure};
use crate::runtime::{Created, Running, StartError};

pub fn created(
    core: &mut Core,
    uid: &str,
    index: usize,
    attempt: u32,
    result: Result<Created, StartError>,
    now: Now,
    out: &mut Output,
) {
    let timeout = core.config.runtime_request_timeout;
    let Some(p) = core.pods.get_mut(uid) else {
        return;
    };
    let in_flight = matches!(p.containers.get(index).map(|c| &c.phase), Some(Phase::Creating { attempt: a, .. }) if *a == attempt);
    if !in_flight {
        return;
    }
    match result {
        Ok(created) => {
            let message = if created.pulled {
                format!("Successfully pulled image {:?}", created.image)
            } else {
                format!(
                    "Container image {:?} already present on machine",
                    created.image
                )
            };
            out.commands
                .push(event(p, Some(index), Normal, "Pulled", message, now));
            let name = p.containers[index].name.clone();
            out.commands.push(event(
                p,
                Some(index),
                Normal,
                "Created",
                format!("Created container {name}"),
                now,
            ));
            p.on_created(index, attempt, now.tick, timeout);
            if let Some(sb) = p.sandbox.paths() {
                out.commands
                    .push(Command::Launch(crate::runtime::InstanceSpec {
                        pod: p.pod.clone(),
                        sandbox: sb.clone(),
                        index,
                        attempt,
                    }));
            }
        }
        Err(StartError::SandboxLost(what)) => {
            p.containers[index].phase = Phase::Idle;
            sandbox_lost(p, what, now, out);
        }
        Err(e) => start_failed(p, index, &e, now, out),
    }
}

pub fn launched(
    core: &mut Core,
    uid: &str,
    index: usize,
    attempt: u32,
    result: Result<Running, StartError>,
    now: Now,
    out: &mut Output,
) {
    let Some(p) = core.pods.get_mut(uid) else {
        return;
    };
    // A launch abandoned meanwhile is settled by its abandon, not by this report.
    let Some(Phase::Launching {
        attempt: a, since, ..
    }) = p.containers.get(index).map(|c| &c.phase)
    else {
        return;
    };
    if *a != attempt {
        return;
    }
    let began = *since;
    match result {
        Ok(running) => {
            let c = &p.containers[index];
            log::info!(
                "{}: {} (pid {}, attempt {})",
                p.container_name(index),
                if c.ever_started {
                    "restarted"
                } else {
                    "started"
                },
                running.pid,
                running.attempt
            );
            p.on_started(index, running, now.tick);
            core.start_latency
                .observe(now.tick.saturating_sub(began).as_secs_f64());
            let name = p.containers[index].name.clone();
            out.commands.push(event(
                p,
                Some(index),
                Normal,
                "Started",
                format!("Started container {name}"),
                now,
            ));
            out.commands.extend(save(p, index));
        }
        Err(e) => start_failed(p, index, &e, now, out),
    }
    // An exit that came first: applied now that the instance is known to have run, or freed
    // with the failed launch.
    if let Some(rec) = p.containers[index].early_exit.take() {
        if p.containers[index].phase.running().is_some() {
            super::inputs::exited(core, rec, now, out);
        } else {
            out.commands.push(Command::Release(rec));
        }
    }
}

/// A start that did not produce a running container: logged once per state (a retry that
/// fails the same way is no news), shown as the container's waiting reason, backed off.
pub fn start_failed(p: &mut PodState, index: usize, e: &StartError, now: Now, out: &mut Output) {
    let f = StartFailure::from(e);
    let name = p.container_name(index);
    let same = p.containers[index].waiting.as_ref() == Some(&(f.reason.clone(), f.message.clone()));
    if same {
        log::debug!("{name}: still cannot start: {}", f.reason);
    } else {
        log::warn!("{name}: cannot start: {}: {}", f.reason, f.message);
    }
    // What the kubelet records: a failed pull names the image, then `Error: <reason>`;
    // anything else is `Error: <message>`.
    let image = p.spec_of(index).image.clone();
    let failures = match f.reason.as_str() {
        "ErrImagePull" => vec![
            (
                "Failed",
                format!("Failed to pull image {image:?}: {}", f.message),
            ),
            ("Failed", "Error: ErrImagePull".to_string()),
        ],
        "ErrImageNeverPull" => vec![
            ("ErrImageNeverPull", f.message.clone()),
            ("Failed", "Error: ErrImageNeverPull".to_string()),
        ],
        _ => vec![("Failed", format!("Error: {}", f.message))],
    };
    for (reason, message) in failures {
        out.commands
            .push(event(p, Some(index), Warning, reason, message, now));
    }
    p.on_start_failed(index, f, now.tick, &now.wall_text());
    back_off(p, index, now, out);
    out.commands.extend(save(p, index));
}

/// The BackOff event when the next start of `index` waits.
pub fn back_off(p: &PodState, index: usize, now: Now, out: &mut Output) {
    let c = &p.containers[index];
    if !c.backoff.waiting(now.tick) || p.terminating {
        return;
    }
    let message = match &c.waiting {
        Some((reason, _)) if reason == "ErrImagePull" => {
            format!("Back-off pulling image {:?}", p.spec_of(index).image)
        }
        _ => format!(
            "Back-off restarting failed container {} in pod {}",
            c.name,
            p.pod.name()
        ),
    };
    out.commands
        .push(event(p, Some(index), Warning, "BackOff", message, now));
}

/// A sandbox found gone by a create: what still runs in it is stopped (the plan does it),
/// then it is set up again, as the kubelet recreates a pod sandbox that is gone.
fn sandbox_lost(p: &mut PodState, what: String, now: Now, out: &mut Output) {
    let SandboxState::Ready(sb) = &p.sandbox else {
        return; // already known
    };
    let sandbox = sb.clone();
    let mut stopping = 0;
    for c in p.containers.iter_mut().filter(|c| c.phase.can_stop()) {
        if c.stop_reason.is_none() {
            c.stop_reason = Some(SANDBOX_GONE.into());
            stopping += 1;
        }
    }
    let name = p.pod.full_name();
    if stopping > 0 {
        log::warn!("{name}: pod sandbox is gone ({what}); stopping its {stopping} running container(s) to set it up again");
    } else {
        log::warn!("{name}: pod sandbox is gone ({what}); setting it up again");
    }
    out.commands.push(event(
        p,
        None,
        Normal,
        "SandboxChanged",
        "Pod sandbox changed, it will be killed and re-created.".into(),
        now,
    ));
    p.sandbox = SandboxState::Lost { sandbox, what };
}
