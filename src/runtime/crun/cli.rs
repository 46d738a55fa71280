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

#[derive(Debug, Clone)]
pub struct Crun {
    pub binary: PathBuf,
    pub root: PathBuf,
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
        let out = self.command(args).output().await.map_err(|e| CrunError {
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
            Ok(_) => Ok(()),
            Err(e)
                if e.message.contains("does not exist") || e.message.contains("No such file") =>
            {
                Ok(())
            }
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
