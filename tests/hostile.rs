//! Hostile pods on real crun: what a container plants must never reach the host.

use crate::common;

use common::*;
use std::time::Duration;

/// CVE-2017-1002101: a container plants a symlink to `/` in an emptyDir; another container
/// mounts it with `subPath`. It must not get the host's root: the container is refused with
/// the kubelet's reason, and a subPath that stays inside the volume still works.
#[test]
fn sub_path_symlinks_never_mount_the_host() {
    let mut a = Agent::new("subpath");
    a.start();
    let marker = std::env::temp_dir().join(format!("stl-pwned-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: sp}}\nspec:\n  terminationGracePeriodSeconds: 0\n  initContainers:\n  - name: plant\n    image: {IMAGE}\n    command: [sh, -c, 'ln -s / /vol/esc && ln -s ../../.. /vol/rel && mkdir -p /vol/ok && echo inside > /vol/ok/f']\n    volumeMounts: [{{name: vol, mountPath: /vol}}]\n  containers:\n  - name: abs\n    image: {IMAGE}\n    command: [sh, -c, 'touch /host{m}; sleep 1000']\n    volumeMounts: [{{name: vol, mountPath: /host, subPath: esc}}]\n  - name: rel\n    image: {IMAGE}\n    command: [sh, -c, 'touch /host{m}; sleep 1000']\n    volumeMounts: [{{name: vol, mountPath: /host, subPath: rel}}]\n  - name: good\n    image: {IMAGE}\n    command: [sh, -c, 'cat /ok/f > /ok/seen; sleep 1000']\n    volumeMounts: [{{name: vol, mountPath: /ok, subPath: ok}}]\n  volumes:\n  - {{name: vol, emptyDir: {{}}}}\n",
        m = marker.display()
    );
    a.write_manifest("sp.yaml", &manifest);
    a.wait_running("sp", "good");
    for name in ["abs", "rel"] {
        let c = a.wait_container("sp", name, "refused", |c| {
            c["state"]["waiting"]["reason"] == "CreateContainerConfigError"
        });
        let msg = c["state"]["waiting"]["message"].as_str().unwrap_or("");
        assert!(
            msg.contains("subPath") && msg.contains("outside the volume"),
            "{msg}"
        );
    }
    let uid = a.pod("sp").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = a.root.join(format!("pods/{uid}/volumes/vol/ok/seen"));
    let text = wait_until(
        "the good container's write",
        Duration::from_secs(20),
        || std::fs::read_to_string(&seen).ok(),
    );
    assert_eq!(text, "inside\n");
    // Retries (with backoff) never get through either.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!marker.exists(), "a container wrote {}", marker.display());
}
