//! `staticlet get pods [NAME...]`: the agent's `/pods` shown the kubectl way (sorted by
//! namespace and name; `-o wide|name|json|yaml`; `pods "x" not found` for a missing name).

use super::{age, display_status, fetch, print_table, ClientError};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// `staticlet get RESOURCE [NAME...] [-o FORMAT] [-n NS]`.
#[derive(Debug, Clone, Default)]
pub struct GetArgs {
    pub resource: String,
    pub names: Vec<String>,
    pub output: Option<String>,
    pub namespace: Option<String>,
}

/// The pods a `get pods [NAME...] [-n NS]` asks for, sorted by namespace and name as the API
/// server lists them; names may omit the node suffix. Names that match nothing are returned
/// apart, for kubectl's `pods "x" not found`.
pub fn select_pods(
    list: &Value,
    names: &[String],
    namespace: Option<&str>,
) -> (Vec<Value>, Vec<String>) {
    let mut items: Vec<Value> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| namespace.is_none_or(|n| p["metadata"]["namespace"] == n))
        .collect();
    items.sort_by_key(|p| {
        (
            p["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            p["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    });
    if names.is_empty() {
        return (items, Vec::new());
    }
    let is = |p: &Value, n: &str| {
        let name = p["metadata"]["name"].as_str().unwrap_or("");
        let node = p["spec"]["nodeName"].as_str().unwrap_or("");
        name == n || name == format!("{n}-{node}")
    };
    let mut found: Vec<Value> = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        let hits: Vec<&Value> = items.iter().filter(|p| is(p, n)).collect();
        if hits.is_empty() {
            missing.push(n.clone());
        }
        for p in hits {
            if !found.contains(p) {
                found.push(p.clone());
            }
        }
    }
    (found, missing)
}

/// `pods`, `pod`, `po`, optionally with `/NAME` as kubectl accepts (`get pod/web`).
fn pod_resource(resource: &str) -> Option<Option<&str>> {
    let (kind, name) = match resource.split_once('/') {
        Some((k, n)) => (k, Some(n)),
        None => (resource, None),
    };
    matches!(kind, "pods" | "pod" | "po").then_some(name)
}

impl GetArgs {
    /// The pod names asked for (`pod/NAME` and the positional names), or why the request
    /// cannot be served; checked before the agent is contacted.
    pub fn names(&self) -> Result<Vec<String>, ClientError> {
        let Some(inline_name) = pod_resource(&self.resource) else {
            return Err(ClientError::Usage(format!(
                "get {:?}: only `get pods` is supported",
                self.resource
            )));
        };
        let output = self.output.as_deref();
        if !matches!(output, None | Some("wide" | "name" | "json" | "yaml")) {
            return Err(ClientError::Usage(format!(
                "-o {:?}: use wide, name, json or yaml",
                output.unwrap_or("")
            )));
        }
        Ok(inline_name
            .map(String::from)
            .into_iter()
            .chain(self.names.iter().cloned())
            .collect())
    }
}

pub fn get(addr: SocketAddr, cmd: &GetArgs) -> Result<(), ClientError> {
    let names = cmd.names()?;
    let output = cmd.output.as_deref();
    let list = fetch(addr, "/pods")?;
    let (items, missing) = select_pods(&list, &names, cmd.namespace.as_deref());
    match output {
        // One named pod is shown as the object itself, several as a List, as kubectl does.
        Some(format @ ("json" | "yaml")) => {
            let doc = match (names.len(), items.first()) {
                (0, _) => {
                    let mut l = list.clone();
                    l["items"] = Value::Array(items);
                    Some(l)
                }
                (1, Some(one)) => Some(one.clone()),
                (1, None) => None,
                _ => Some(json!({
                    "apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": ""}, "items": items,
                })),
            };
            if let Some(doc) = doc {
                print_doc(&doc, format);
            }
        }
        Some("name") => {
            for p in &items {
                println!("pod/{}", p["metadata"]["name"].as_str().unwrap_or(""));
            }
        }
        _ => print_pods_table(addr, &items, output == Some("wide"), names.is_empty())?,
    }
    if missing.is_empty() {
        return Ok(());
    }
    for n in &missing {
        eprintln!("Error from server (NotFound): pods {n:?} not found");
    }
    Err(ClientError::Reported)
}

fn print_doc(doc: &Value, format: &str) {
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(doc).unwrap_or_default());
    } else {
        print!("{}", serde_yaml::to_string(doc).unwrap_or_default());
    }
}

/// The kubectl-style table; `notes` adds what is wrong below it (refused mirrors, manifest
/// problems), which only the plain `get pods` shows.
fn print_pods_table(
    addr: SocketAddr,
    items: &[Value],
    wide: bool,
    notes: bool,
) -> Result<(), ClientError> {
    if items.is_empty() {
        // kubectl's answer for an empty list, on stderr as kubectl does.
        if notes {
            eprintln!("No resources found");
        }
    } else {
        // The MIRROR column appears once the mirror sync reports (a kubeconfig is set).
        let show_mirror = items.iter().any(|p| mirror_condition(p).is_some());
        let mut header = vec!["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"];
        if show_mirror {
            header.push("MIRROR");
        }
        if wide {
            header.extend(["IP", "NODE", "MANIFEST"]);
        }
        let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
        rows.extend(items.iter().map(|p| pod_row(p, show_mirror, wide)));
        print_table(&rows);
    }
    if !notes {
        return Ok(());
    }
    let refused: Vec<String> = items
        .iter()
        .filter_map(|p| {
            let c = mirror_condition(p).filter(|c| c["reason"] == "Refused")?;
            Some(format!(
                "  {}/{}: {}",
                p["metadata"]["namespace"].as_str().unwrap_or(""),
                p["metadata"]["name"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            ))
        })
        .collect();
    if !refused.is_empty() {
        println!("\nMirror pods refused by the API server (the pods run):");
        println!("{}", refused.join("\n"));
    }
    let problems = fetch(addr, "/manifests")?;
    let problems = problems.as_array().cloned().unwrap_or_default();
    if !problems.is_empty() {
        println!("\nManifest problems:");
        for p in problems {
            println!(
                "  {}",
                p["message"].as_str().unwrap_or("").replace('\n', "\n  ")
            );
        }
    }
    Ok(())
}

fn pod_row(p: &Value, show_mirror: bool, wide: bool) -> Vec<String> {
    let cs = p["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = cs.iter().filter(|c| c["ready"] == true).count();
    let restarts: u64 = cs
        .iter()
        .map(|c| c["restartCount"].as_u64().unwrap_or(0))
        .sum();
    let has = |kind: &str| {
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == kind)
    };
    let manifest_error = has("staticlet.dev/ManifestValid");
    let rolled_back = has("staticlet.dev/RolledBack");
    let mut row = vec![
        p["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        p["metadata"]["name"].as_str().unwrap_or("").to_string(),
        format!("{ready}/{}", cs.len()),
        display_status(p)
            + if manifest_error {
                " (manifest error)"
            } else {
                ""
            }
            + if rolled_back { " (rolled back)" } else { "" },
        restarts.to_string(),
        age(p),
    ];
    if show_mirror {
        row.push(mirror_column(p).to_string());
    }
    if wide {
        row.push(
            p["status"]["podIP"]
                .as_str()
                .unwrap_or("<none>")
                .to_string(),
        );
        row.push(p["spec"]["nodeName"].as_str().unwrap_or("").to_string());
        row.push(if manifest_error {
            "invalid (last good version runs)".into()
        } else {
            "ok".into()
        });
    }
    row
}

fn mirror_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "staticlet.dev/MirrorSynced")
}

/// The MIRROR column: whether the pod's mirror in the API server is current.
fn mirror_column(pod: &Value) -> &'static str {
    match mirror_condition(pod).map(|c| &c["reason"]) {
        Some(r) if r == "Synced" => "synced",
        Some(r) if r == "Refused" => "refused",
        Some(_) => "pending",
        None => "-",
    }
}
