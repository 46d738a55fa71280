//! `staticlet get pods`, `describe pod` and `logs`: clients of the running agent's status
//! endpoint, with kubectl's output conventions.

mod describe;
mod get;

use crate::cli::{client_address, Failure, LogsCmd};
use serde_json::Value;
use std::io::Read;
use std::time::Duration;

pub use describe::describe;
pub use get::{get, select_pods};

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(timeout)
        .http_status_as_error(false)
        .build()
        .into()
}

pub(crate) fn fetch(addr: std::net::SocketAddr, path: &str) -> Result<Value, Failure> {
    let url = format!("http://{addr}{path}");
    let mut resp = agent(Some(Duration::from_secs(10)))
        .get(&url)
        .call()
        .map_err(|e| Failure::Failed(format!("cannot reach the agent at {addr} ({e}); is `staticlet run` running, with this --status-address?")))?;
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| Failure::Failed(format!("{url}: {e}")))?;
    serde_json::from_str(&body).map_err(|e| Failure::Failed(format!("{url}: not JSON: {e}")))
}

/// kubectl's STATUS column: a container's waiting or terminated reason wins over the phase.
pub fn display_status(pod: &Value) -> String {
    if pod["metadata"].get("deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let status = &pod["status"];
    let inits = status["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, c) in inits.iter().enumerate() {
        if c["state"]
            .get("terminated")
            .is_some_and(|t| t["exitCode"] == 0)
        {
            continue;
        }
        if let Some(r) = c["state"]["waiting"]["reason"]
            .as_str()
            .filter(|r| *r != "PodInitializing")
        {
            return format!("Init:{r}");
        }
        if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            return format!("Init:{r}");
        }
        return format!("Init:{i}/{}", inits.len());
    }
    let mut reason = status["phase"].as_str().unwrap_or("Unknown").to_string();
    for c in status["containerStatuses"].as_array().into_iter().flatten() {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            reason = r.to_string();
        } else if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            reason = r.to_string();
        }
    }
    reason
}

pub(crate) fn age(pod: &Value) -> String {
    pod["status"]["startTime"]
        .as_str()
        .and_then(crate::timefmt::parse_rfc3339)
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map(crate::timefmt::short_age)
        .unwrap_or_else(|| "<unknown>".into())
}

pub(crate) fn print_table(rows: &[Vec<String>]) {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == cols {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// The one pod named `name` (with or without the node suffix) on the agent's `/pods`.
pub(crate) fn find_pod(
    addr: std::net::SocketAddr,
    name: &str,
    namespace: Option<&str>,
) -> Result<Value, Failure> {
    let list = fetch(addr, "/pods")?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let mut matches: Vec<Value> = items
        .into_iter()
        .filter(|p| {
            let full = p["metadata"]["name"].as_str().unwrap_or("");
            let node = p["spec"]["nodeName"].as_str().unwrap_or("");
            let ns_ok = namespace.is_none_or(|n| p["metadata"]["namespace"] == n);
            ns_ok && (full == name || full == format!("{name}-{node}"))
        })
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(Failure::Failed(format!("pod {name:?} not found"))),
        _ => Err(Failure::Failed(format!(
            "pod {name:?} exists in several namespaces; give -n"
        ))),
    }
}

pub fn logs(cmd: &LogsCmd) -> Result<(), Failure> {
    let addr = client_address(cmd.config.as_ref(), cmd.status_address.as_ref())?;
    let pod = find_pod(addr, &cmd.pod, cmd.namespace.as_deref())?;
    let pod = &pod;
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    let container = match (&cmd.container, names.as_slice()) {
        (Some(c), _) => c.clone(),
        (None, [one]) => one.clone(),
        (None, _) => {
            return Err(Failure::Usage(format!(
                "pod has several containers ({}); choose one with -c",
                names.join(", ")
            )))
        }
    };
    let mut url = format!(
        "http://{addr}/containerLogs/{}/{}/{container}",
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or("")
    );
    let mut q = Vec::new();
    if cmd.follow {
        q.push("follow=true");
    }
    if cmd.previous {
        q.push("previous=true");
    }
    if !q.is_empty() {
        url = format!("{url}?{}", q.join("&"));
    }
    let timeout = if cmd.follow {
        None
    } else {
        Some(Duration::from_secs(30))
    };
    let mut resp = agent(timeout)
        .get(&url)
        .call()
        .map_err(|e| Failure::Failed(format!("{url}: {e}")))?;
    if resp.status().as_u16() != 200 {
        let msg = resp.body_mut().read_to_string().unwrap_or_default();
        return Err(Failure::Failed(msg.trim().to_string()));
    }
    let mut reader = resp.body_mut().as_reader();
    let mut buf = [0u8; 8192];
    let mut out = std::io::stdout();
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Failure::Failed(e.to_string()))?;
        if n == 0 {
            break;
        }
        use std::io::Write;
        let _ = out.write_all(&buf[..n]);
        let _ = out.flush();
    }
    Ok(())
}
