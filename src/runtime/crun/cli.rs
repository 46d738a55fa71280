//! Calls to the OCI runtime (crun) other than create/start, which the monitor owns:
//! kill, delete, state, list and exec. Each call names the command and its stderr on failure.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("{command}: {message}")]
pub struct CrunError {
    pub command: String,
    pub message: String,
}

impl CrunError {
    /// crun has no such container (deleted, or never made).
    pub fn is_gone(&self) -> bool {
        self.message.contains("does not exist") || self.message.contains("No such file")
    }
}

#[derive(Debug, Clone)]
pub struct Crun {
    pub binary: PathBuf,
    pub root: PathBuf,
    /// How long a kill, delete, state or list may take (`runtimeRequestTimeout`, as the
    /// kubelet bounds its runtime calls): a crun that hangs fails the call, it is killed.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    pub status: String,
    #[serde(default)]
    pub bundle: String,
}

impl Crun {
    fn command(&self, args: &[&str]) -> smol::process::Command {
        let mut c = smol::process::Command::new(&self.binary);
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(std::process::Stdio::null());
        c
    }

    async fn run(&self, args: &[&str]) -> Result<Vec<u8>, CrunError> {
        // Short calls (kill, delete, list, state) share a few slots: 500 pods removed at once
        // run a few crun processes at a time instead of 500 that fight for the cores.
        // (`exec` does not take a slot: a hook may legitimately run for its grace period.)
        static SLOTS: smol::lock::Semaphore = smol::lock::Semaphore::new(8);
        let _slot = SLOTS.acquire().await;
        let shown = format!("{} {}", self.binary.display(), args.join(" "));
        let mut command = self.command(args);
        command.kill_on_drop(true);
        let out = smol::future::or(async { Some(command.output().await) }, async {
            smol::Timer::after(self.timeout).await;
            None
        })
        .await
        .ok_or_else(|| CrunError {
            command: shown.clone(),
            message: format!("timed out after {:?}", self.timeout),
        })?
        .map_err(|e| CrunError {
            command: shown.clone(),
            message: e.to_string(),
        })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(CrunError {
                command: shown,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), CrunError> {
        self.run(&["kill", id, signal]).await.map(|_| ())
    }

    /// Removes the container and its cgroup; a container that is already gone is fine.
    pub async fn delete(&self, id: &str) -> Result<(), CrunError> {
        match self.run(&["delete", "--force", id]).await {
            Err(e) if !e.is_gone() => Err(e),
            _ => Ok(()),
        }
    }

    /// The ids of the containers crun knows, from its state directory (a directory per
    /// container) rather than `crun list`, which reads every container's state: a pod's
    /// teardown asking for its own few would make removing 200 pods quadratic.
    pub fn ids(&self) -> std::io::Result<Vec<String>> {
        match std::fs::read_dir(&self.root) {
            Ok(entries) => Ok(entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    pub async fn list(&self) -> Result<Vec<ContainerState>, CrunError> {
        let out = self.run(&["list", "--format", "json"]).await?;
        if out.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Vec::new());
        }
        serde_json::from_slice::<Option<Vec<ContainerState>>>(&out)
            .map(Option::unwrap_or_default)
            .map_err(|e| CrunError {
                command: "crun list".into(),
                message: e.to_string(),
            })
    }

    /// Runs `cmd` in the container; returns the exit code and combined output, or an error
    /// after `timeout` (the exec'd process is killed).
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<(i32, String), CrunError> {
        let mut args: Vec<&str> = vec!["exec", id];
        args.extend(cmd.iter().map(String::as_str));
        let shown = format!("crun exec {id} {}", cmd.join(" "));
        let mut child = self
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CrunError {
                command: shown.clone(),
                message: e.to_string(),
            })?;
        let out = smol::future::or(
            async {
                let stdout = child.stdout.take();
                let stderr = child.stderr.take();
                let mut text = Vec::new();
                if let Some(mut s) = stdout {
                    let _ = smol::io::AsyncReadExt::read_to_end(&mut s, &mut text).await;
                }
                if let Some(mut s) = stderr {
                    let _ = smol::io::AsyncReadExt::read_to_end(&mut s, &mut text).await;
                }
                let status = child.status().await;
                Some((status, text))
            },
            async {
                smol::Timer::after(timeout).await;
                None
            },
        )
        .await;
        match out {
            Some((Ok(status), text)) => Ok((
                status.code().unwrap_or(128),
                String::from_utf8_lossy(&text).trim().to_string(),
            )),
            Some((Err(e), _)) => Err(CrunError {
                command: shown,
                message: e.to_string(),
            }),
            None => Err(CrunError {
                command: shown,
                message: format!("timed out after {timeout:?}"),
            }),
        }
    }
}

/// A process id that is alive and still the same process (checked by its start time).
pub fn alive(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists() && {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // State is the field after the closing paren of the command name; Z is a zombie.
        !stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z'))
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_state_directory_s_subdirectories() {
        let root = std::env::temp_dir().join(format!("stl-crun-ids-{}", std::process::id()));
        let crun = Crun {
            binary: "crun".into(),
            root: root.clone(),
            timeout: Duration::from_secs(5),
        };
        assert!(
            crun.ids().unwrap().is_empty(),
            "a missing root holds nothing"
        );
        std::fs::create_dir_all(root.join("abc-main-0")).unwrap();
        std::fs::create_dir_all(root.join("def-side-1")).unwrap();
        std::fs::write(root.join("a-file"), b"").unwrap();
        let mut ids = crun.ids().unwrap();
        ids.sort();
        assert_eq!(ids, ["abc-main-0", "def-side-1"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A crun that hangs fails the call after the timeout and is killed, instead of holding
    /// the pod's stop or teardown for ever.
    #[test]
    fn a_hanging_crun_call_times_out_and_is_killed() {
        let dir = std::env::temp_dir().join(format!("stl-crun-hang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("crun");
        let pid_file = dir.join("pid");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho $$ > {}\nexec sleep 30\n",
                pid_file.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let crun = Crun {
            binary: script,
            root: dir.join("state"),
            timeout: Duration::from_millis(300),
        };
        let began = std::time::Instant::now();
        let err = smol::block_on(crun.kill("abc-main-0", "SIGKILL")).unwrap_err();
        assert!(err.to_string().contains("timed out after 300ms"), "{err}");
        assert!(began.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "the hanging crun was killed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
