//! A handful of the public manifests in tests/manifests/public run on real crun, as written,
//! except: images that cannot be pulled offline become the busybox test image (a container
//! whose program is then missing runs a small shell script instead), and hostPath paths move
//! under the test's directory. What each asks for is checked on the host, in the container's
//! process (`/proc/<pid>/status`) or in its log.

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn public(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests/public")
        .join(name);
    serde_yaml::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The test image for every container; `script` for those whose program busybox lacks;
/// hostPath paths under `base` (files created for `File` volumes).
fn offline(mut pod: Value, base: &Path, script: Option<&str>) -> String {
    for c in pod["spec"]["containers"].as_array_mut().unwrap() {
        c["image"] = json!(IMAGE);
        c["imagePullPolicy"] = json!("Never");
        if let Some(s) = script {
            c["command"] = json!(["sh", "-c", s]);
            c.as_object_mut().unwrap().remove("args");
        }
    }
    let volumes = pod["spec"].get_mut("volumes").and_then(Value::as_array_mut);
    for v in volumes.into_iter().flatten() {
        if let Some(p) = v["hostPath"]["path"].as_str() {
            let moved = base.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
            if v["hostPath"]["type"].is_null() || v["hostPath"]["type"] == "File" {
                std::fs::write(&moved, "# test\n").unwrap();
            }
            v["hostPath"]["path"] = json!(moved.display().to_string());
        }
    }
    pod["spec"]["terminationGracePeriodSeconds"] = json!(1);
    pod.to_string()
}

/// `/proc/<pid>/status` of the pod's first running container, from the host.
fn process_status(a: &Agent, pod: &str) -> BTreeMap<String, String> {
    let uid = a.pod(pod).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let pid = a
        .crun_list()
        .into_iter()
        .find(|(id, _, s)| id.starts_with(&uid[..12]) && s == "running")
        .map(|(_, pid, _)| pid)
        .unwrap();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn public_manifests_run_on_crun() {
    let mut a = Agent::new("corpus");
    a.start();
    let base = a.base.join("host");
    a.write_manifest(
        "sc.json",
        &offline(public("docs-security-context.yaml"), &base, None),
    );
    a.write_manifest(
        "dapi.json",
        // This busybox has no printenv.
        &offline(
            public("docs-dapi-envars-container.yaml"),
            &base,
            Some("echo $MY_CPU_REQUEST $MY_CPU_LIMIT $MY_MEM_REQUEST $MY_MEM_LIMIT; sleep 3600"),
        ),
    );
    a.write_manifest(
        "seccomp.json",
        &offline(
            public("docs-seccomp-default-pod.yaml"),
            &base,
            Some("sleep 3600"),
        ),
    );
    a.write_manifest(
        "keepalived.json",
        &offline(public("ha-keepalived.yaml"), &base, Some("sleep 3600")),
    );
    a.write_manifest(
        "scheduler.json",
        &offline(
            public("kubeadm-kube-scheduler.yaml"),
            &base,
            Some("sleep 3600"),
        ),
    );
    a.write_manifest(
        "etcd.json",
        &offline(public("kubeadm-etcd.yaml"), &base, Some("sleep 3600")),
    );

    // The docs' security context: user, group, fsGroup and supplementalGroups on the process,
    // and the emptyDir owned by the fsGroup.
    a.wait_running("security-context-demo", "sec-ctx-demo");
    let s = process_status(&a, "security-context-demo");
    assert!(s["Uid"].starts_with("1000\t"), "{s:?}");
    assert!(s["Gid"].starts_with("3000\t"), "{s:?}");
    assert_eq!(s["Groups"], "2000 4000");
    assert_eq!(s["NoNewPrivs"], "1");

    // The docs' resourceFieldRef example prints what the kubelet would.
    let log = wait_until_or_none(Duration::from_secs(60), || {
        let (ok, out, _) = a.cli(&["logs", "dapi-envars-resourcefieldref"]);
        (ok && out.contains("67108864")).then_some(out)
    })
    .unwrap_or_else(|| {
        let p = a.pod("dapi-envars-resourcefieldref");
        panic!(
            "no dapi log: {:?}\n{:?}",
            a.cli(&["logs", "dapi-envars-resourcefieldref"]),
            p.map(|p| p["status"].to_string())
        )
    });
    let values: Vec<&str> = log.split_whitespace().take(4).collect();
    assert_eq!(values, ["1", "1", "33554432", "67108864"], "{log}");

    // kubeadm's and the docs' RuntimeDefault: a seccomp filter; kubeadm's control plane runs.
    a.wait_running("default-pod", "test-container");
    assert_eq!(process_status(&a, "default-pod")["Seccomp"], "2");
    a.wait_running("kube-scheduler", "kube-scheduler");
    assert_eq!(process_status(&a, "kube-scheduler")["Seccomp"], "2");
    a.wait_running("etcd", "etcd");
    assert!(base.join("var/lib/etcd").is_dir(), "DirectoryOrCreate");

    // keepalived's capabilities, added to containerd's defaults.
    a.wait_running("keepalived", "keepalived");
    let k = process_status(&a, "keepalived");
    let eff = u64::from_str_radix(&k["CapEff"], 16).unwrap();
    for bit in [11, 12, 13] {
        assert!(
            eff & (1 << bit) != 0,
            "NET_BROADCAST, NET_ADMIN, NET_RAW: {k:?}"
        );
    }
    assert_eq!(k["CapAmb"], "0000000000000000");
}
