//! `staticlet describe pod NAME`: one pod as `kubectl describe pod` shows it (containers with
//! their state, last state and restarts, conditions, volumes, and the pod's events), from the
//! agent's `/pods` and `/events`, so it works on the gateway with no API server.

use super::{fetch, find_pod, ClientError};
use serde_json::Value;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::SystemTime;

/// `staticlet describe pod NAME [-n NS]` (also `describe pod/NAME`).
#[derive(Debug, Clone, Default)]
pub struct DescribeArgs {
    pub resource: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

pub fn describe(addr: SocketAddr, cmd: &DescribeArgs) -> Result<(), ClientError> {
    let (kind, inline) = match cmd.resource.split_once('/') {
        Some((k, n)) => (k, Some(n.to_string())),
        None => (cmd.resource.as_str(), None),
    };
    if !matches!(kind, "pod" | "pods" | "po") {
        return Err(ClientError::Usage(format!(
            "describe {:?}: only `describe pod NAME` is supported",
            cmd.resource
        )));
    }
    let Some(name) = inline.or_else(|| cmd.name.clone()) else {
        return Err(ClientError::Usage(
            "describe pod: give the pod's name".into(),
        ));
    };
    let pod = find_pod(addr, &name, cmd.namespace.as_deref())?;
    let events = fetch(addr, "/events")?;
    print!("{}", render(&pod, &events, SystemTime::now()));
    Ok(())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

/// `key=value` lines (labels) or `key: value` lines (annotations), aligned under the first.
fn map_lines(v: &Value, sep: &str, indent: usize) -> String {
    let lines: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}{sep}{}", s(v)))
        .collect();
    if lines.is_empty() {
        return "<none>".into();
    }
    lines.join(&format!("\n{}", " ".repeat(indent)))
}

fn age(t: &str, now: SystemTime) -> String {
    crate::sys::timefmt::parse_rfc3339(t)
        .and_then(|t| now.duration_since(t).ok())
        .map_or_else(|| "<unknown>".into(), crate::sys::timefmt::short_age)
}

/// kubectl's state block: `Running` with its start, `Waiting` with its reason, or
/// `Terminated` with reason, exit code and times.
fn state(out: &mut String, title: &str, st: &Value) {
    let pad = |k: &str| format!("      {k}:{}", " ".repeat(13usize.saturating_sub(k.len())));
    if let Some(r) = st.get("running") {
        let _ = writeln!(out, "    {title}Running");
        let _ = writeln!(out, "{}{}", pad("Started"), s(&r["startedAt"]));
    } else if let Some(w) = st.get("waiting") {
        let _ = writeln!(out, "    {title}Waiting");
        let _ = writeln!(out, "{}{}", pad("Reason"), s(&w["reason"]));
        if let Some(m) = w["message"].as_str().filter(|m| !m.is_empty()) {
            let _ = writeln!(out, "{}{m}", pad("Message"));
        }
    } else if let Some(t) = st.get("terminated") {
        let _ = writeln!(out, "    {title}Terminated");
        let _ = writeln!(out, "{}{}", pad("Reason"), s(&t["reason"]));
        if let Some(m) = t["message"].as_str().filter(|m| !m.is_empty()) {
            let _ = writeln!(out, "{}{m}", pad("Message"));
        }
        let _ = writeln!(out, "{}{}", pad("Exit Code"), t["exitCode"]);
        let _ = writeln!(out, "{}{}", pad("Started"), s(&t["startedAt"]));
        let _ = writeln!(out, "{}{}", pad("Finished"), s(&t["finishedAt"]));
    } else {
        let _ = writeln!(out, "    {title}<none>");
    }
}

fn containers(out: &mut String, pod: &Value, spec_key: &str, status_key: &str, title: &str) {
    let specs = pod["spec"][spec_key]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if specs.is_empty() {
        return;
    }
    let statuses = pod["status"][status_key]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let _ = writeln!(out, "{title}:");
    for c in &specs {
        let name = s(&c["name"]);
        let st = statuses
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
            .unwrap_or(Value::Null);
        let _ = writeln!(out, "  {name}:");
        let _ = writeln!(
            out,
            "    Container ID:   {}",
            or_none(s(&st["containerID"]).into())
        );
        let _ = writeln!(out, "    Image:          {}", s(&c["image"]));
        let ports: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["containerPort"],
                    p["protocol"].as_str().unwrap_or("TCP")
                )
            })
            .collect();
        let _ = writeln!(out, "    Port:           {}", or_none(ports.join(", ")));
        for (key, label) in [("command", "Command"), ("args", "Args")] {
            if let Some(list) = c[key].as_array().filter(|l| !l.is_empty()) {
                let _ = writeln!(out, "    {label}:");
                for a in list {
                    let _ = writeln!(out, "      {}", s(a));
                }
            }
        }
        state(out, "State:          ", &st["state"]);
        if st["lastState"].as_object().is_some_and(|o| !o.is_empty()) {
            state(out, "Last State:     ", &st["lastState"]);
        }
        let _ = writeln!(
            out,
            "    Ready:          {}",
            st["ready"].as_bool().unwrap_or(false)
        );
        let _ = writeln!(
            out,
            "    Restart Count:  {}",
            st["restartCount"].as_u64().unwrap_or(0)
        );
        let mounts: Vec<String> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let ro = if m["readOnly"] == true { "ro" } else { "rw" };
                format!("{} from {} ({ro})", s(&m["mountPath"]), s(&m["name"]))
            })
            .collect();
        let _ = writeln!(
            out,
            "    Mounts:         {}",
            or_none(mounts.join("\n                    "))
        );
    }
}

fn volumes(out: &mut String, pod: &Value) {
    let vols = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if vols.is_empty() {
        let _ = writeln!(out, "Volumes:          <none>");
        return;
    }
    let _ = writeln!(out, "Volumes:");
    for v in &vols {
        let _ = writeln!(out, "  {}:", s(&v["name"]));
        if let Some(h) = v.get("hostPath") {
            let _ = writeln!(
                out,
                "    Type:          HostPath (bare host directory volume)"
            );
            let _ = writeln!(out, "    Path:          {}", s(&h["path"]));
            let _ = writeln!(out, "    HostPathType:  {}", s(&h["type"]));
        } else if let Some(e) = v.get("emptyDir") {
            let _ = writeln!(
                out,
                "    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)"
            );
            let _ = writeln!(out, "    Medium:     {}", s(&e["medium"]));
            let _ = writeln!(
                out,
                "    SizeLimit:  {}",
                or_none(s(&e["sizeLimit"]).into())
            );
        } else {
            let _ = writeln!(out, "    Type:  {v}");
        }
    }
}

/// The pod's events (by namespace, name and UID), as kubectl's Events table.
fn events_table(out: &mut String, pod: &Value, events: &Value, now: SystemTime) {
    let m = &pod["metadata"];
    let mut mine: Vec<&Value> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            let o = &e["involvedObject"];
            o["name"] == m["name"] && o["namespace"] == m["namespace"] && o["uid"] == m["uid"]
        })
        .collect();
    mine.sort_by(|a, b| s(&a["lastTimestamp"]).cmp(s(&b["lastTimestamp"])));
    if mine.is_empty() {
        let _ = writeln!(out, "Events:            <none>");
        return;
    }
    let mut rows = vec![["Type", "Reason", "Age", "From", "Message"]
        .map(String::from)
        .to_vec()];
    rows.push(
        ["----", "------", "----", "----", "-------"]
            .map(String::from)
            .to_vec(),
    );
    for e in mine {
        let count = e["count"].as_u64().unwrap_or(1);
        let last = age(s(&e["lastTimestamp"]), now);
        let when = if count > 1 {
            format!(
                "{last} (x{count} over {})",
                age(s(&e["firstTimestamp"]), now)
            )
        } else {
            last
        };
        rows.push(vec![
            s(&e["type"]).into(),
            s(&e["reason"]).into(),
            when,
            s(&e["source"]["component"]).into(),
            s(&e["message"]).into(),
        ]);
    }
    let _ = writeln!(out, "Events:");
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 4 {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    if let Some(n) = events["metadata"]["dropped"].as_u64().filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "  ({n} older events of this node were dropped unposted)"
        );
    }
}

/// The whole description.
pub fn render(pod: &Value, events: &Value, now: SystemTime) -> String {
    let m = &pod["metadata"];
    let st = &pod["status"];
    let mut out = String::new();
    let node = format!("{}/{}", s(&pod["spec"]["nodeName"]), s(&st["hostIP"]));
    for (k, v) in [
        ("Name", s(&m["name"]).to_string()),
        ("Namespace", s(&m["namespace"]).to_string()),
        (
            "Priority",
            pod["spec"]["priority"].as_i64().unwrap_or(0).to_string(),
        ),
        ("Node", node),
        ("Start Time", or_none(s(&st["startTime"]).into())),
        ("Labels", map_lines(&m["labels"], "=", 14)),
        ("Annotations", map_lines(&m["annotations"], ": ", 14)),
        ("Status", super::display_status(pod)),
        ("IP", or_none(s(&st["podIP"]).into())),
    ] {
        let _ = writeln!(out, "{:<14}{v}", format!("{k}:"));
    }
    containers(
        &mut out,
        pod,
        "initContainers",
        "initContainerStatuses",
        "Init Containers",
    );
    containers(
        &mut out,
        pod,
        "containers",
        "containerStatuses",
        "Containers",
    );
    let _ = writeln!(out, "Conditions:\n  Type              Status");
    for c in st["conditions"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {:<18}{}", s(&c["type"]), s(&c["status"]));
    }
    volumes(&mut out, pod);
    let _ = writeln!(
        out,
        "QoS Class:         {}",
        or_none(s(&st["qosClass"]).into())
    );
    events_table(&mut out, pod, events, now);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_crash_looping_pod_reads_like_kubectl_describe() {
        let pod = json!({
            "metadata": {"name": "web-node1", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "node1", "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "exit 3"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "hostPath": {"path": "/srv/data", "type": ""}}]},
            "status": {"phase": "Running", "hostIP": "10.0.0.5", "startTime": "2023-11-14T22:13:20Z",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "main", "restartCount": 4, "ready": false,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error", "startedAt": "a", "finishedAt": "b"}}}]},
        });
        let events = json!({"items": [
            {"involvedObject": {"name": "web-node1", "namespace": "default", "uid": "u1"}, "type": "Warning",
             "reason": "BackOff", "count": 3, "firstTimestamp": "2023-11-14T22:13:20Z", "lastTimestamp": "2023-11-14T22:14:20Z",
             "source": {"component": "kubelet"}, "message": "Back-off restarting failed container"},
            {"involvedObject": {"name": "web-node1", "namespace": "default", "uid": "old"}, "type": "Normal",
             "reason": "Started", "count": 1, "lastTimestamp": "2023-11-14T22:13:00Z", "message": "of the old version"},
        ], "metadata": {"dropped": 0}});
        let now = crate::sys::timefmt::parse_rfc3339("2023-11-14T22:15:20Z").unwrap();
        let text = render(&pod, &events, now);
        for want in [
            "Name:         web-node1",
            "Node:         node1/10.0.0.5",
            "Labels:       app=web",
            "Status:       CrashLoopBackOff",
            "    State:          Waiting\n      Reason:       CrashLoopBackOff",
            "    Last State:     Terminated\n      Reason:       Error\n      Exit Code:    3",
            "    Restart Count:  4",
            "    Mounts:         /data from data (rw)",
            "  Ready             False",
            "    Path:          /srv/data",
            "Warning  BackOff  60s (x3 over 2m)  kubelet  Back-off restarting failed container",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
        assert!(!text.contains("of the old version"), "{text}");
    }
}
