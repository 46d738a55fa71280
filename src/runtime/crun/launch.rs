//! Launching a created instance: the monitor is started (`staticlet monitor <instance>`),
//! runs `crun run`, and reports one line on its stdout (`started <pid>` or `failed <why>`).
//! A launch the runtime does not finish in time is abandoned: the monitor's process group
//! and whatever crun made of the container are ended and confirmed gone, so that a next
//! attempt never runs beside this one.

use super::Context;
use crate::runtime::{InstanceSpec, Layout, Running, StartError, StartedRecord};
use smol::io::AsyncBufReadExt;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A launch in progress: what abandoning it needs.
pub struct Launch {
    monitor_pid: i32,
    /// Closed (or sent to) when the monitor has ended and been reaped.
    ended: smol::channel::Receiver<()>,
}

type Launches = RefCell<HashMap<String, Launch>>;

fn id_of(spec: &InstanceSpec) -> String {
    Layout::container_id(spec.pod.uid(), spec.container_name(), spec.attempt)
}

pub async fn launch(
    ctx: &Arc<Context>,
    launches: &Launches,
    spec: &InstanceSpec,
) -> Result<Running, StartError> {
    let id = id_of(spec);
    let instance = ctx
        .layout
        .instance(spec.pod.uid(), spec.container_name(), spec.attempt);
    let mut child = smol::process::Command::new(&ctx.exe)
        .arg("monitor")
        .arg(&instance)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|source| StartError::Monitor {
            exe: ctx.exe.clone(),
            source,
        })?;
    let stdout = child.stdout.take();
    let monitor_pid = child.id() as i32;
    // Reap the monitor whenever it ends; it is re-parented to init if the agent dies first.
    let (ended_tx, ended_rx) = smol::channel::bounded::<()>(1);
    smol::spawn(async move {
        let _ = child.status().await;
        let _ = ended_tx.send(()).await;
    })
    .detach();
    launches.borrow_mut().insert(
        id.clone(),
        Launch {
            monitor_pid,
            ended: ended_rx,
        },
    );
    let mut line = String::new();
    if let Some(out) = stdout {
        let mut reader = smol::io::BufReader::new(out);
        let _ = reader.read_line(&mut line).await;
    }
    // Gone from the map: abandoned meanwhile, and abandon cleans up.
    let abandoned = launches.borrow_mut().remove(&id).is_none();
    let line = line.trim();
    if line.starts_with("started ") && !abandoned {
        let rec: StartedRecord = crate::runtime::records::read_json(&instance.join("started.json"))
            .ok_or(StartError::NoStartedRecord)?;
        return Ok(Running {
            attempt: spec.attempt,
            id,
            pid: rec.container_pid,
            monitor_pid: rec.monitor_pid,
            started_at: rec.started_at,
            since: Duration::ZERO,
        });
    }
    let message = line
        .strip_prefix("failed ")
        .unwrap_or("the monitor ended without a report")
        .to_string();
    if !abandoned {
        crate::sys::blocking::run_logged("releasing a failed start", move || {
            crate::runtime::instance::release_instance(&instance)
        })
        .await;
    }
    // As the kubelet reports a container whose process could not be started: waiting with
    // RunContainerError, last state terminated with StartError, exit code 128.
    Err(StartError::Run(message))
}

/// Ends a launch that took too long: the monitor's whole process group (it is a session
/// leader, so `crun run` in progress goes with it), then whatever crun made of the container.
/// Fails when the container cannot be confirmed gone, so that no next attempt starts.
pub async fn abandon(
    ctx: &Arc<Context>,
    launches: &Launches,
    spec: &InstanceSpec,
) -> Result<(), StartError> {
    let id = id_of(spec);
    // Taken out first: the launch task looks at the map when its monitor ends.
    let launch = launches.borrow_mut().remove(&id);
    if let Some(launch) = launch {
        // SAFETY: kill(2) on our own child's process group and pid.
        unsafe {
            libc::kill(-launch.monitor_pid, libc::SIGKILL);
            libc::kill(launch.monitor_pid, libc::SIGKILL);
        }
        smol::future::or(
            async {
                let _ = launch.ended.recv().await;
            },
            async {
                smol::Timer::after(Duration::from_secs(10)).await;
            },
        )
        .await;
    }
    let mut gone = false;
    for _ in 0..10 {
        let _ = ctx.crun.kill(&id, "SIGKILL").await;
        let _ = ctx.crun.delete(&id).await;
        match ctx.crun.list().await {
            Ok(list) if !list.iter().any(|c| c.id == id) => {
                gone = true;
                break;
            }
            _ => smol::Timer::after(Duration::from_millis(500)).await,
        };
    }
    if !gone {
        return Err(StartError::NotRemoved { id });
    }
    let instance = ctx
        .layout
        .instance(spec.pod.uid(), spec.container_name(), spec.attempt);
    crate::sys::blocking::run_logged("releasing a timed-out start", move || {
        crate::runtime::instance::release_instance(&instance)
    })
    .await;
    Ok(())
}
