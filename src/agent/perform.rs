//! Running one command of the core against a runtime, and the input its result becomes.
//! The shell spawns this for every command; the core's unit tests call it with the fake
//! runtime.

use super::core::{Command, Input};
use crate::runtime::Runtime;

/// Performs `cmd`; `None` for commands whose result the core does not need (a release, a
/// saved record) and for those the shell handles itself (an Event, the shutdown).
pub async fn perform<R: Runtime>(rt: &R, cmd: Command) -> Option<Input> {
    Some(match cmd {
        Command::SetupSandbox(pod) => Input::SandboxReady {
            uid: pod.uid().to_string(),
            result: rt.setup_sandbox(&pod).await,
        },
        Command::Create(spec) => Input::Created {
            uid: spec.pod.uid().to_string(),
            index: spec.index,
            attempt: spec.attempt,
            result: rt.create(&spec).await,
        },
        Command::Launch(spec) => Input::Launched {
            uid: spec.pod.uid().to_string(),
            index: spec.index,
            attempt: spec.attempt,
            result: rt.launch(&spec).await,
        },
        Command::Abandon(spec) => Input::Abandoned {
            uid: spec.pod.uid().to_string(),
            index: spec.index,
            attempt: spec.attempt,
            result: rt.abandon(&spec).await,
        },
        Command::Stop { uid, index, spec } => Input::Stopped {
            uid,
            index,
            outcome: rt.stop(&spec).await,
        },
        Command::Probe {
            uid,
            index,
            kind,
            spec,
        } => Input::Probed {
            uid,
            index,
            kind,
            result: rt.run_handler(&spec).await,
        },
        Command::PostStart {
            uid,
            index,
            attempt,
            spec,
        } => Input::PostStarted {
            uid,
            index,
            attempt,
            result: rt.run_handler(&spec).await,
        },
        Command::SaveRollouts(list) => {
            if let Err(e) = rt.save_rollouts(&list) {
                log::warn!("cannot keep the rollouts in progress: {e}");
            }
            return None;
        }
        Command::Release(rec) => {
            rt.release(&rec).await;
            return None;
        }
        Command::Teardown(pod) => Input::TornDown {
            uid: pod.uid().to_string(),
            result: rt.teardown(&pod, false).await,
        },
        Command::SaveContainer {
            uid,
            name,
            container,
            record,
        } => {
            if let Err(e) = rt.save_container(&uid, &container, &record) {
                log::warn!("{name}: cannot save status: {e}");
            }
            return None;
        }
        Command::Event(_) | Command::Shutdown => return None,
    })
}
