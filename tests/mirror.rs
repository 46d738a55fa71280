//! Mirror pods, Node and Lease against a real kube-apiserver with etcd on loopback
//! (`--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction`), with real
//! containers: node credentials by client certificate and by token.
//!
//! The apiserver comes from tests/support/apiserver (`build` once per machine, which
//! tests/setup-host runs; `pki`, `start`, `stop` per test, each test its own directory and
//! ports). The cluster is checked as an admin over HTTPS with the admin client certificate.

use crate::common;

use common::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::apiserver::{script, Cluster};

/// The static pod (from the agent's `/pods`) and its MirrorSynced condition's reason.
fn mirror_reason(a: &Agent, pod: &str) -> Option<(String, String)> {
    let p = a.pod(pod)?;
    let c = p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "staticlet.dev/MirrorSynced")?
        .clone();
    Some((
        c["reason"].as_str()?.to_string(),
        c["message"].as_str().unwrap_or("").to_string(),
    ))
}

fn wait_mirror_synced(a: &Agent, pod: &str, timeout: Duration) {
    wait_until(
        &format!("{pod}: mirror synced\n{}", a.agent_log()),
        timeout,
        || mirror_reason(a, pod).filter(|(r, _)| r == "Synced"),
    );
}

fn static_uid(a: &Agent, pod: &str) -> String {
    a.pod(pod).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn pids(a: &Agent) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = a
        .crun_list()
        .into_iter()
        .map(|(id, pid, _)| (id, pid))
        .collect();
    v.sort();
    v
}

fn agent_with(api: &Cluster, tag: &str, creds: &str, extra: &[&str]) -> Agent {
    let mut a = Agent::new(tag);
    // A kubelet API port of its own: tests run side by side.
    a.extra_args = vec!["--kubeconfig".into(), api.kubeconfig(creds)];
    a.extra_args
        .extend(["--port".into(), free_port().to_string()]);
    a.extra_args.extend(extra.iter().map(|s| s.to_string()));
    a.start();
    a
}

fn with_labels(yaml: String, labels: &str) -> String {
    yaml.replacen(
        "  namespace: default\n",
        &format!("  namespace: default\n  labels: {labels}\n"),
        1,
    )
}

#[test]
fn node_lease_and_mirror_pods_by_client_certificate() {
    let api = Cluster::start("cert");
    let a = agent_with(
        &api,
        "mirror-cert",
        "cert",
        &["--node-labels", "example.com/site=berlin"],
    );
    a.write_manifest(
        "web.yaml",
        &with_labels(pod_yaml("web", "", "", "[sleep, '100000']"), "{app: web}"),
    );
    a.write_manifest(
        "crash.yaml",
        &pod_yaml("crash", "", "", "[sh, -c, 'sleep 1; exit 3']"),
    );

    let node = wait_until("the Node", Duration::from_secs(30), || {
        api.get("/api/v1/nodes/node1")
    });
    let node_uid = node["metadata"]["uid"].as_str().unwrap().to_string();
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "node1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(
        labels["kubernetes.io/arch"],
        staticlet::image::host_platform().1
    );
    assert_eq!(labels["example.com/site"], "berlin");
    let node = wait_until("the Node status", Duration::from_secs(20), || {
        api.get("/api/v1/nodes/node1")
            .filter(|n| n["status"]["nodeInfo"]["kubeletVersion"] != "")
    });
    let st = &node["status"];
    let info = &st["nodeInfo"];
    assert!(
        info["kubeletVersion"]
            .as_str()
            .unwrap()
            .contains("staticlet"),
        "{info}"
    );
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("crun://"),
        "{info}"
    );
    assert_eq!(info["operatingSystem"], "linux");
    assert_ne!(info["kernelVersion"], "");
    assert_ne!(info["osImage"], "");
    assert_eq!(st["capacity"]["pods"], "110");
    assert!(
        st["allocatable"]["memory"]
            .as_str()
            .unwrap()
            .ends_with("Ki"),
        "{st}"
    );
    let types: Vec<&str> = st["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["InternalIP", "Hostname"]);
    let ready = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");

    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1";
    let lease = wait_until("the Lease", Duration::from_secs(20), || api.get(lease_path));
    assert_eq!(lease["spec"]["holderIdentity"], "node1");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    let owner = &lease["metadata"]["ownerReferences"];
    assert_eq!(
        owner,
        &json!([{"apiVersion": "v1", "kind": "Node", "name": "node1", "uid": node_uid}])
    );
    let first = lease["spec"]["renewTime"].clone();
    let t0 = Instant::now();
    wait_until("the Lease to be renewed", Duration::from_secs(25), || {
        api.get(lease_path)
            .filter(|l| l["spec"]["renewTime"] != first)
    });
    eprintln!("lease renewed after {:?}", t0.elapsed());

    a.wait_running("web", "main");
    wait_mirror_synced(&a, "web", Duration::from_secs(30));
    let uid = static_uid(&a, "web");
    let m = api.mirror("default", "web").expect("mirror pod web-node1");
    let ann = &m["metadata"]["annotations"];
    assert_eq!(ann["kubernetes.io/config.mirror"], uid.as_str());
    assert_eq!(ann["kubernetes.io/config.hash"], uid.as_str());
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    assert!(ann["kubernetes.io/config.seen"].is_string(), "{ann}");
    assert_eq!(m["metadata"]["labels"]["app"], "web");
    assert_eq!(
        m["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": "node1", "uid": node_uid, "controller": true}])
    );
    assert_eq!(m["spec"]["nodeName"], "node1");
    assert_eq!(m["status"]["phase"], "Running");
    let cs = &m["status"]["containerStatuses"][0];
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap_or("")
            .starts_with("crun://"),
        "{cs}"
    );
    assert_eq!(cs["image"], IMAGE);

    // A container restart shows in the mirror's status.
    let m = wait_until(
        &format!(
            "crash-node1 restartCount >= 2 in the API server\n{}",
            a.agent_log()
        ),
        Duration::from_secs(60),
        || {
            api.mirror("default", "crash").filter(|m| {
                m["status"]["containerStatuses"][0]["restartCount"]
                    .as_u64()
                    .unwrap_or(0)
                    >= 2
            })
        },
    );
    assert_eq!(
        m["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 3,
        "{}",
        m["status"]
    );

    let (ok, out, err) = a.cli(&["get", "pods"]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.contains("MIRROR"), "{out}");
    let web = out.lines().find(|l| l.contains("web-node1")).unwrap();
    assert!(web.contains("synced"), "{out}");
    assert!(
        a.agent_log()
            .contains("mirror pod default/web-node1 created"),
        "{}",
        a.agent_log()
    );
}

#[test]
fn admin_delete_edit_and_remove_by_token() {
    let api = Cluster::start("token");
    let a = agent_with(&api, "mirror-token", "token", &[]);
    a.write_manifest("web.yaml", &pod_yaml("web", "", "", "[sleep, '100000']"));
    a.wait_running("web", "main");
    wait_mirror_synced(&a, "web", Duration::from_secs(30));
    let before = pids(&a);
    let first = api.mirror("default", "web").unwrap()["metadata"]["uid"].clone();

    // kubectl delete pod: graceful, so it stays Terminating (no kubelet finishes it); the
    // agent replaces it at once.
    let (code, _) = api.req("DELETE", "/api/v1/namespaces/default/pods/web-node1", None);
    assert_eq!(code, 200);
    let m = wait_until(
        &format!("the mirror to come back\n{}", a.agent_log()),
        Duration::from_secs(30),
        || {
            api.mirror("default", "web").filter(|m| {
                m["metadata"]["uid"] != first && m["metadata"]["deletionTimestamp"].is_null()
            })
        },
    );
    wait_until("its status", Duration::from_secs(20), || {
        api.mirror("default", "web")
            .filter(|m| m["status"]["phase"] == "Running")
    });
    // Deleted at once (grace 0) by an admin: the pod watch tells, and it is created again.
    let second = m["metadata"]["uid"].clone();
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0});
    assert_eq!(
        api.req(
            "DELETE",
            "/api/v1/namespaces/default/pods/web-node1",
            Some(opts)
        )
        .0,
        200
    );
    wait_until(
        &format!("the mirror to come back again\n{}", a.agent_log()),
        Duration::from_secs(30),
        || {
            api.mirror("default", "web")
                .filter(|m| m["metadata"]["uid"] != second)
        },
    );
    assert_eq!(pids(&a), before, "the static pod keeps running, untouched");
    assert!(
        a.agent_log()
            .contains("mirror pod default/web-node1 recreated"),
        "{}",
        a.agent_log()
    );

    // Edit: the mirror is replaced by one with the new hash.
    let old_uid = static_uid(&a, "web");
    a.write_manifest("web.yaml", &pod_yaml("web", "", "", "[sleep, '200000']"));
    let new_uid = wait_until("the edited pod", Duration::from_secs(30), || {
        a.pod("web")
            .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
            .filter(|u| *u != old_uid)
    });
    wait_until(
        &format!("the replaced mirror\n{}", a.agent_log()),
        Duration::from_secs(30),
        || {
            api.mirror("default", "web").filter(|m| {
                m["metadata"]["annotations"]["kubernetes.io/config.mirror"] == new_uid.as_str()
                    && m["spec"]["containers"][0]["command"][1] == "200000"
            })
        },
    );
    a.wait_running("web", "main");
    wait_mirror_synced(&a, "web", Duration::from_secs(30));

    // Remove: the mirror goes.
    a.remove_manifest("web.yaml");
    wait_until(
        &format!("the mirror to go\n{}", a.agent_log()),
        Duration::from_secs(30),
        || {
            (api.req("GET", "/api/v1/namespaces/default/pods/web-node1", None)
                .0
                == 404)
                .then_some(())
        },
    );
    assert!(
        a.agent_log()
            .contains("mirror pod default/web-node1 deleted"),
        "{}",
        a.agent_log()
    );
}

#[test]
fn api_server_outage_pods_keep_running_and_mirrors_converge() {
    let api = Cluster::start("outage");
    let a = agent_with(&api, "mirror-outage", "cert", &[]);
    a.write_manifest("keep.yaml", &pod_yaml("keep", "", "", "[sleep, '100000']"));
    a.write_manifest("old.yaml", &pod_yaml("old", "", "", "[sleep, '100000']"));
    a.wait_running("keep", "main");
    a.wait_running("old", "main");
    wait_mirror_synced(&a, "keep", Duration::from_secs(30));
    wait_mirror_synced(&a, "old", Duration::from_secs(30));
    let node_uid = api.get("/api/v1/nodes/node1").unwrap()["metadata"]["uid"].clone();
    let keep_mirror = api.mirror("default", "keep").unwrap()["metadata"]["uid"].clone();
    let keep_pid = a.wait_running("keep", "main")["containerID"].clone();

    api.stop_apiserver();
    let down = Instant::now();
    wait_until(
        "the mirror state to turn pending",
        Duration::from_secs(30),
        || mirror_reason(&a, "keep").filter(|(r, m)| r == "Pending" && m.contains("API server")),
    );
    // Changes while offline: a pod goes, one comes, and all keep running.
    a.remove_manifest("old.yaml");
    a.write_manifest("new.yaml", &pod_yaml("new", "", "", "[sleep, '100000']"));
    a.wait_running("new", "main");
    wait_until("old to stop", Duration::from_secs(30), || {
        a.pod("old").is_none().then_some(())
    });
    let (ok, out, _) = a.cli(&["get", "pods"]);
    assert!(
        ok && out.lines().filter(|l| l.contains("pending")).count() == 2,
        "{out}"
    );
    std::thread::sleep(Duration::from_secs(20).saturating_sub(down.elapsed()));
    assert_eq!(
        a.wait_running("keep", "main")["containerID"],
        keep_pid,
        "keep ran through the outage"
    );

    api.start_apiserver();
    let back = Instant::now();
    wait_mirror_synced(&a, "new", Duration::from_secs(45));
    wait_mirror_synced(&a, "keep", Duration::from_secs(10));
    wait_until(
        &format!("old-node1 to be deleted\n{}", a.agent_log()),
        Duration::from_secs(20),
        || {
            (api.req("GET", "/api/v1/namespaces/default/pods/old-node1", None)
                .0
                == 404)
                .then_some(())
        },
    );
    eprintln!(
        "converged {:?} after the apiserver was back",
        back.elapsed()
    );
    let m = api.mirror("default", "new").unwrap();
    assert_eq!(m["status"]["phase"], "Running");
    assert_eq!(
        api.mirror("default", "keep").unwrap()["metadata"]["uid"],
        keep_mirror,
        "an unchanged mirror is kept"
    );
    assert_eq!(
        api.get("/api/v1/nodes/node1").unwrap()["metadata"]["uid"],
        node_uid
    );
    assert_eq!(a.wait_running("keep", "main")["containerID"], keep_pid);
    let log = a.agent_log();
    assert!(log.contains("reachable again"), "{log}");
    assert_eq!(
        log.matches("pods keep running, retrying").count(),
        1,
        "one line for the outage, not one per retry:\n{log}"
    );
}

#[test]
fn refused_mirror_is_reported_and_created_once_the_namespace_exists() {
    let api = Cluster::start("refused");
    let a = agent_with(
        &api,
        "mirror-refused",
        "tokenfile",
        &[
            "--node-labels",
            "node-role.kubernetes.io/edge=,example.com/site=x",
        ],
    );
    let yaml = pod_yaml("web", "", "", "[sleep, '100000']")
        .replace("namespace: default", "namespace: edge-apps");
    a.write_manifest("web.yaml", &yaml);
    a.wait_running("web", "main");
    let (_, msg) = wait_until(
        &format!("the refusal\n{}", a.agent_log()),
        Duration::from_secs(30),
        || mirror_reason(&a, "web").filter(|(r, _)| r == "Refused"),
    );
    assert_eq!(msg, "namespaces \"edge-apps\" not found");
    let (ok, out, _) = a.cli(&["get", "pods"]);
    assert!(
        ok && out.contains("refused") && out.contains("namespaces \"edge-apps\" not found"),
        "{out}"
    );
    // NodeRestriction refused a label: the Node is registered without the configured ones.
    let node = api.get("/api/v1/nodes/node1").unwrap();
    assert!(
        node["metadata"]["labels"].get("example.com/site").is_none(),
        "{node}"
    );
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "node1"
    );
    let log = a.agent_log();
    assert!(
        log.contains("not allowed to set the following labels: node-role.kubernetes.io/edge"),
        "{log}"
    );

    std::thread::sleep(Duration::from_secs(8)); // a few retries with backoff
    assert_eq!(
        a.agent_log()
            .matches("mirror pod edge-apps/web-node1 refused")
            .count(),
        1,
        "logged once:\n{}",
        a.agent_log()
    );
    let (code, _) = api.req(
        "POST",
        "/api/v1/namespaces",
        Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge-apps"}})),
    );
    assert_eq!(code, 201);
    let t = Instant::now();
    wait_mirror_synced(&a, "web", Duration::from_secs(45));
    eprintln!("mirror created {:?} after the namespace", t.elapsed());
    let m = api.mirror("edge-apps", "web").unwrap();
    assert_eq!(m["status"]["phase"], "Running");
    assert!(a
        .agent_log()
        .contains("mirror pod edge-apps/web-node1 created"));
}

#[test]
fn kubeconfigs_of_the_test_pki_parse() {
    // PKCS#1 RSA key inline (admin), EC SEC1 key by path (node), token: as kubeadm and a
    // kubelet write them. openssl makes them, no server needed.
    let dir = unique_dir("kc-pki");
    script("pki", &[dir.to_str().unwrap(), "node1"]);
    use staticlet::mirror::kubeconfig::load;
    for (file, cert, token) in [
        ("admin.kubeconfig", true, false),
        ("node-cert.kubeconfig", true, false),
        ("node-token.kubeconfig", false, true),
    ] {
        let kc = load(&dir.join(file), None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(kc.server, "https://127.0.0.1:6443");
        assert!(kc.ca_pem.is_some(), "{file}");
        assert_eq!(
            (kc.client_cert.is_some(), kc.token.is_some()),
            (cert, token),
            "{file}"
        );
        staticlet::mirror::api::HttpApi::new(&kc, Duration::from_secs(1)).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_kubeconfig_is_a_usage_error() {
    require_root_and_crun();
    let dir = unique_dir("kc-bad");
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\nclusters: []\n").unwrap();
    std::fs::create_dir_all(dir.join("m")).unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--status-address", "none", "--pod-manifest-path"])
        .arg(dir.join("m"))
        .arg("--root-dir")
        .arg(dir.join("root"))
        .arg("--pod-logs-dir")
        .arg(dir.join("logs"))
        .arg("--kubeconfig")
        .arg(&kc)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent ran on with a kubeconfig without a context");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&kc.display().to_string()) && err.contains("current-context"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
