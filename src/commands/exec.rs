//! `staticlet exec POD [-c CONTAINER] [-i] [-t] -- COMMAND...`: runs a command in a running
//! container with `crun exec`, which enters the container's namespaces and cgroup and takes
//! its user, environment and working directory, as `kubectl exec` does through a kubelet.
//! The command's exit code is this command's exit code.
//!
//! With `-t` (and `-i` on a terminal) crun is asked for a terminal (`--tty`): in the
//! foreground crun makes the pseudo-terminal itself and relays it to ours, so no console
//! socket is needed. Without a terminal to give, `-t` is dropped with kubectl's warning.
//!
//! The pod and its container ID come from the agent's status endpoint; crun is called with the
//! agent's runtime and state directory (`--root-dir`, `--config`), so exec needs root, as the
//! agent does.

use crate::cli::{client_address, root_dir_config, ExecCmd, Failure};
use serde_json::Value;
use std::process::{Command, Stdio};

/// Runs the command; returns the exit code (its own, or 2 and 1 for this command's usage
/// errors and failures).
pub fn run(cmd: &ExecCmd) -> i32 {
    match exec(cmd) {
        Ok(code) => code,
        Err(Failure::Usage(m)) => {
            eprintln!("staticlet: {m}");
            2
        }
        Err(Failure::Failed(m)) => {
            eprintln!("staticlet: {m}");
            1
        }
    }
}

/// The container's crun ID, if it runs: from the pod's status (`crun://<id>`).
pub fn container_id(pod: &Value, container: &str) -> Result<String, Failure> {
    let status = ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| pod["status"][*k].as_array())
        .flatten()
        .find(|c| c["name"] == container);
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let Some(st) = status.filter(|c| c["state"].get("running").is_some()) else {
        let why = status
            .and_then(|c| {
                c["state"]["waiting"]["reason"]
                    .as_str()
                    .or(c["state"]["terminated"]["reason"].as_str())
            })
            .unwrap_or("not started");
        return Err(Failure::Failed(format!(
            "container {container:?} in pod {pod_name:?} is not running ({why}); cannot exec into it"
        )));
    };
    st["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("crun://"))
        .filter(|id| !id.is_empty())
        .map(String::from)
        .ok_or_else(|| {
            Failure::Failed(format!(
                "container {container:?} in pod {pod_name:?} has no container ID yet"
            ))
        })
}

/// The container to use: the one named, the only one, or the first (with kubectl's note).
pub fn choose_container(pod: &Value, wanted: Option<&str>) -> Result<String, Failure> {
    let names: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod["spec"][*k].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let apps: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match wanted {
        Some(w) if names.contains(&w) => Ok(w.to_string()),
        Some(w) => Err(Failure::Failed(format!(
            "container {w:?} is not valid for pod {:?}; choose one of: {}",
            pod["metadata"]["name"].as_str().unwrap_or(""),
            names.join(", ")
        ))),
        None => {
            let first = apps
                .first()
                .ok_or_else(|| Failure::Failed("the pod has no containers".into()))?;
            if apps.len() > 1 {
                eprintln!("Defaulted container {first:?} out of: {}", apps.join(", "));
            }
            Ok(first.to_string())
        }
    }
}

fn exec(cmd: &ExecCmd) -> Result<i32, Failure> {
    if cmd.command.is_empty() {
        return Err(Failure::Usage(
            "exec: give the command after --, e.g. staticlet exec web -- sh".into(),
        ));
    }
    let config = root_dir_config(cmd.config.as_ref(), cmd.root_dir.as_deref())?;
    let addr = client_address(cmd.config.as_ref(), cmd.status_address.as_ref())?;
    let pod = crate::client::find_pod(addr, &cmd.pod, cmd.namespace.as_deref())
        .map_err(super::client::failure)?;
    let container = choose_container(&pod, cmd.container.as_deref())?;
    let id = container_id(&pod, &container)?;
    let runtime = crate::sys::host::which(&config.runtime_path).ok_or_else(|| {
        Failure::Usage(format!(
            "runtime {} not found on PATH; install crun or set --config",
            config.runtime_path.display()
        ))
    })?;
    // SAFETY: isatty only inspects the descriptor.
    let terminal = unsafe { libc::isatty(0) } == 1;
    let tty = cmd.tty && cmd.stdin && terminal;
    if cmd.tty && !tty {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let mut c = Command::new(&runtime);
    c.arg("--root")
        .arg(config.root_dir.join("crun"))
        .arg("exec");
    if tty {
        c.arg("--tty");
    }
    c.arg(&id).args(&cmd.command);
    c.stdin(if cmd.stdin {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    let status = c
        .status()
        .map_err(|e| Failure::Failed(format!("{} exec {id}: {e}", runtime.display())))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_chosen_and_must_run() {
        let pod = json!({
            "metadata": {"name": "web-node1"},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "main"}, {"name": "side"}]},
            "status": {"containerStatuses": [
                {"name": "main", "containerID": "crun://abc-main-0", "state": {"running": {}}},
                {"name": "side", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
        });
        assert_eq!(choose_container(&pod, None).ok(), Some("main".into()));
        assert_eq!(
            choose_container(&pod, Some("side")).ok(),
            Some("side".into())
        );
        assert!(
            matches!(choose_container(&pod, Some("x")), Err(Failure::Failed(m)) if m.contains("main, side"))
        );
        assert_eq!(container_id(&pod, "main").ok(), Some("abc-main-0".into()));
        assert!(
            matches!(container_id(&pod, "side"), Err(Failure::Failed(m)) if m.contains("CrashLoopBackOff"))
        );
        assert!(container_id(&pod, "init").is_err());
    }
}
