//! Calling CNI plugins as the CNI specification and libcni do: the executable named by the
//! plugin's `type`, found in the plugin directories, run with `CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS` and `CNI_PATH` in its environment
//! and its configuration (with `name`, `cniVersion`, `prevResult` and `runtimeConfig` added,
//! as libcni's `buildOneConfig` does) on stdin. It answers a result or an error as JSON on
//! stdout. Each call has a deadline, after which the plugin is killed.

use super::NetworkError;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// How long one plugin call may take (host-local waits on a lock shared with other pods).
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// A plugin answering more than this is not answering a CNI result.
const MAX_OUTPUT: usize = 1024 * 1024;

/// What one pod's calls have in common.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub container_id: &'a str,
    /// The network namespace path; empty for a DEL whose namespace is gone (CNI spec).
    pub netns: &'a str,
    pub if_name: &'a str,
    pub args: &'a str,
    pub path: &'a [PathBuf],
}

/// The plugin's executable: the first `dir/type` that is an executable file.
pub fn find_plugin(kind: &str, path: &[PathBuf]) -> Result<PathBuf, NetworkError> {
    use std::os::unix::fs::PermissionsExt;
    path.iter()
        .map(|d| d.join(kind))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| NetworkError::PluginMissing {
            plugin: kind.to_string(),
            dirs: path
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// One plugin's stdin: its configuration with the list's name and version, the previous
/// result, and the runtime's capability arguments for the capabilities it declares.
pub fn plugin_config(
    plugin: &Value,
    name: &str,
    cni_version: &str,
    prev_result: Option<&Value>,
    capability_args: &Value,
) -> Value {
    let mut conf: Map<String, Value> = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("name".into(), Value::from(name));
    conf.insert("cniVersion".into(), Value::from(cni_version));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let mut runtime = Map::new();
    if let (Some(caps), Some(args)) = (
        plugin["capabilities"].as_object(),
        capability_args.as_object(),
    ) {
        for (cap, on) in caps {
            if on == &Value::Bool(true) {
                if let Some(v) = args.get(cap) {
                    runtime.insert(cap.clone(), v.clone());
                }
            }
        }
    }
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(conf)
}

/// Runs one plugin; returns what it printed on success (its result, possibly empty for DEL
/// and CHECK), or the error it reported, naming the plugin and the command.
pub fn invoke(
    kind: &str,
    command: &str,
    stdin: &Value,
    call: &Call,
) -> Result<Vec<u8>, NetworkError> {
    let binary = find_plugin(kind, call.path)?;
    let fail = |message: String| NetworkError::Plugin {
        plugin: kind.to_string(),
        command: command.to_ascii_lowercase(),
        message,
    };
    let cni_path = std::env::join_paths(call.path).map_err(|e| fail(e.to_string()))?;
    let input = serde_json::to_vec(stdin).unwrap_or_default();
    let mut cmd = smol::process::Command::new(&binary);
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.if_name)
        .env("CNI_ARGS", call.args)
        .env("CNI_PATH", cni_path)
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let run = async {
        use smol::io::{AsyncReadExt, AsyncWriteExt};
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("{}: {e}", binary.display())))?;
        if let Some(mut w) = child.stdin.take() {
            // A plugin that exits without reading its stdin is judged by its exit status.
            let _ = w.write_all(&input).await;
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_out = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s.take(MAX_OUTPUT as u64).read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.take(MAX_OUTPUT as u64).read_to_end(&mut err).await;
            }
        };
        smol::future::zip(read_out, read_err).await;
        let status = child.status().await.map_err(|e| fail(e.to_string()))?;
        Ok::<_, NetworkError>((status, out, err))
    };
    let deadline = async {
        smol::Timer::after(TIMEOUT).await;
        Err(fail(format!(
            "no answer within {}s; killed",
            TIMEOUT.as_secs()
        )))
    };
    let (status, out, err) = smol::block_on(smol::future::or(run, deadline))?;
    if status.success() {
        return Ok(out);
    }
    Err(fail(error_text(&out, &err, status)))
}

/// The plugin's error as the CNI spec has it on stdout (`msg`, `details`), else its stderr.
fn error_text(out: &[u8], err: &[u8], status: std::process::ExitStatus) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(out) {
        let msg = v["msg"].as_str().unwrap_or("").trim();
        let details = v["details"].as_str().unwrap_or("").trim();
        if !msg.is_empty() {
            return if details.is_empty() {
                msg.to_string()
            } else {
                format!("{msg}: {details}")
            };
        }
    }
    let text = String::from_utf8_lossy(if err.is_empty() { out } else { err });
    let text: String = text.trim().chars().take(500).collect();
    if text.is_empty() {
        format!("{status} without a message")
    } else {
        text
    }
}

/// Compares dotted versions (`0.4.0` >= `0.4.0`); unparsable parts count as 0.
pub fn version_at_least(version: &str, min: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (a, b) = (parse(version), parse(min));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x > y;
        }
    }
    true
}

/// The kubelet's CNI_ARGS for a pod (containerd sends the same keys).
pub fn pod_args(namespace: &str, name: &str, container_id: &str, uid: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
    )
}

/// Whether `path` is a plugin directory holding `kind` (for `doctor`).
pub fn has_plugin(kind: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    find_plugin(kind, dirs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plugin_gets_only_the_capabilities_it_declares() {
        let caps = json!({"portMappings": [{"hostPort": 80}], "bandwidth": {}});
        let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let c = plugin_config(&portmap, "net", "1.0.0", Some(&json!({"ips": []})), &caps);
        assert_eq!(c["name"], "net");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["prevResult"], json!({"ips": []}));
        assert_eq!(
            c["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 80}]})
        );
        let bridge = json!({"type": "bridge"});
        let c = plugin_config(&bridge, "net", "1.0.0", None, &caps);
        assert!(c.get("runtimeConfig").is_none() && c.get("prevResult").is_none());
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(version_at_least("0.4.0", "0.4.0"));
        assert!(version_at_least("1.0.0", "0.4.0"));
        assert!(version_at_least("0.10.0", "0.4.0"));
        assert!(!version_at_least("0.3.1", "0.4.0"));
    }

    #[test]
    fn a_missing_plugin_names_the_directories() {
        let e = find_plugin(
            "nosuch",
            &[PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"nosuch\"") && e.contains("/opt/cni/bin, /usr/lib/cni"),
            "{e}"
        );
    }
}
