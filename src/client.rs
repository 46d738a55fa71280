//! The client side of the agent's status endpoint, with kubectl's output conventions. It
//! serves three commands: `staticlet get pods [NAME...]` ([`get`]), `staticlet describe pod
//! NAME` ([`describe`]) and `staticlet logs POD` ([`logs`]); `commands/` turns their flags
//! into [`GetArgs`], [`DescribeArgs`] and [`LogsArgs`].

mod describe;
mod get;

use serde_json::Value;
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

pub use describe::{describe, DescribeArgs};
pub use get::{get, select_pods, GetArgs};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command was asked for something it cannot do (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the agent at {addr} ({source}); is `staticlet run` running, with this --status-address?")]
    Unreachable {
        addr: SocketAddr,
        source: Box<ureq::Error>,
    },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    /// The agent answered with a refusal (a missing pod, a log that is not there).
    #[error("{0}")]
    Refused(String),
    /// Already told on stderr, as kubectl does (`pods "x" not found`).
    #[error("")]
    Reported,
}

/// `staticlet logs POD [-c CONTAINER] [-n NS] [-f] [-p]`.
#[derive(Debug, Clone, Default)]
pub struct LogsArgs {
    pub pod: String,
    pub container: Option<String>,
    pub namespace: Option<String>,
    pub follow: bool,
    pub previous: bool,
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(timeout)
        .http_status_as_error(false)
        .build()
        .into()
}

pub(crate) fn fetch(addr: SocketAddr, path: &str) -> Result<Value, ClientError> {
    let url = format!("http://{addr}{path}");
    let mut resp = agent(Some(Duration::from_secs(10)))
        .get(&url)
        .call()
        .map_err(|e| ClientError::Unreachable {
            addr,
            source: Box::new(e),
        })?;
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| ClientError::Http {
            url: url.clone(),
            message: e.to_string(),
        })?;
    serde_json::from_str(&body).map_err(|e| ClientError::Http {
        url,
        message: format!("not JSON: {e}"),
    })
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
    let specs = pod["spec"]["initContainers"].as_array();
    for (i, c) in inits.iter().enumerate() {
        if c["state"]
            .get("terminated")
            .is_some_and(|t| t["exitCode"] == 0)
        {
            continue;
        }
        // kubectl: a native sidecar that has started does not hold the pod in Init.
        let sidecar = specs
            .and_then(|s| s.get(i))
            .is_some_and(|s| s["restartPolicy"] == "Always");
        if sidecar && c["started"] == true {
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
    // kubectl: the pod's reason (DeadlineExceeded) over its phase, containers' over both.
    let mut reason = status["reason"]
        .as_str()
        .or(status["phase"].as_str())
        .unwrap_or("Unknown")
        .to_string();
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
        .and_then(crate::sys::timefmt::parse_rfc3339)
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map(crate::sys::timefmt::short_age)
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
    addr: SocketAddr,
    name: &str,
    namespace: Option<&str>,
) -> Result<Value, ClientError> {
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
        0 => Err(ClientError::Refused(format!("pod {name:?} not found"))),
        _ => Err(ClientError::Refused(format!(
            "pod {name:?} exists in several namespaces; give -n"
        ))),
    }
}

pub fn logs(addr: SocketAddr, cmd: &LogsArgs) -> Result<(), ClientError> {
    let pod = &find_pod(addr, &cmd.pod, cmd.namespace.as_deref())?;
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
            return Err(ClientError::Usage(format!(
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
        .map_err(|e| ClientError::Http {
            url: url.clone(),
            message: e.to_string(),
        })?;
    if resp.status().as_u16() != 200 {
        let msg = resp.body_mut().read_to_string().unwrap_or_default();
        return Err(ClientError::Refused(msg.trim().to_string()));
    }
    let mut reader = resp.body_mut().as_reader();
    let mut buf = [0u8; 8192];
    let mut out = std::io::stdout();
    loop {
        let n = reader.read(&mut buf).map_err(|e| ClientError::Http {
            url: url.clone(),
            message: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        use std::io::Write;
        let _ = out.write_all(&buf[..n]);
        let _ = out.flush();
    }
    Ok(())
}
