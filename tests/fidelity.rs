//! Pod spec fidelity on real crun (issue 16): what the security context, sysctls, fsGroup and
//! the downward API ask for is what the container gets, seen from inside it
//! (`/proc/self/status`, `id`, `/proc/sys`, its environment) and on the host (the volume's
//! owner and mode); what the kubelet refuses is refused with its reason and message.

use crate::common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// The container's log once it holds `needle` (the container prints, then sleeps).
fn log_with(a: &Agent, pod: &str, needle: &str) -> String {
    wait_until_or_none(Duration::from_secs(60), || {
        let (ok, out, _) = a.cli(&["logs", pod]);
        (ok && out.contains(needle)).then_some(out)
    })
    .unwrap_or_else(|| {
        let (_, out, err) = a.cli(&["logs", pod]);
        panic!(
            "{pod}: no {needle:?} in its log\nlog: {out}{err}\nstatus: {}\n{}",
            a.pod(pod)
                .map(|p| p["status"].to_string())
                .unwrap_or_default(),
            a.agent_log()
        )
    })
}

/// `Key:\tvalue` lines of a `/proc/<pid>/status` dump.
fn status_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The capability mask of `names` (`CAP_KILL`, ...), as `/proc/self/status` prints it.
fn mask(names: &[&str]) -> String {
    // Kernel bit order (include/uapi/linux/capability.h).
    let caps = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
    ];
    let more = [
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
    ];
    let tail = [
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
    ];
    let caps: Vec<&str> = caps.iter().chain(&more).chain(&tail).copied().collect();
    let bits = names.iter().fold(0u64, |m, n| {
        let bare = n.trim_start_matches("CAP_");
        let bit = caps.iter().position(|c| *c == bare).unwrap();
        m | 1 << bit
    });
    format!("{bits:016x}")
}

const SHOW: &str = "[sh, -c, 'grep -E \"^(Cap|NoNewPrivs|Seccomp)\" /proc/self/status; id; echo done; sleep 1000']";

fn config_file(a: &Agent, body: &str) -> String {
    let path = a.base.join("staticlet.yaml");
    std::fs::write(
        &path,
        format!("apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\n{body}"),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn capabilities_seccomp_and_users_take_effect_inside_the_container() {
    let mut a = Agent::new("fid-caps");
    let config = config_file(&a, "seccompDefault: true\n");
    a.extra_args = vec!["--config".into(), config];
    // A Localhost profile under <rootDir>/seccomp, as the kubelet reads them.
    let profiles = a.root.join("seccomp/profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    a.start();
    // The restricted Pod Security Standard: drop ALL, non-root, no escalation, RuntimeDefault.
    let restricted = "  securityContext:\n    runAsNonRoot: true\n    runAsUser: 1000\n    seccompProfile: {type: RuntimeDefault}\n";
    let restricted_c = "    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities: {drop: [ALL]}\n";
    a.write_manifest(
        "restricted.yaml",
        &pod_yaml("restricted", restricted, restricted_c, SHOW),
    );
    // Names in any case, with or without CAP_; seccompDefault gives RuntimeDefault.
    let tuned_c = "    securityContext:\n      capabilities: {add: [net_admin], drop: [kill, CAP_NET_BIND_SERVICE]}\n";
    a.write_manifest("tuned.yaml", &pod_yaml("tuned", "", tuned_c, SHOW));
    // Privileged: the host's own bounding set (this host may lack one, e.g. CAP_SYS_RESOURCE).
    let privileged_c = "    securityContext: {privileged: true}\n";
    a.write_manifest("priv.yaml", &pod_yaml("priv", "", privileged_c, SHOW));
    // An explicit Unconfined beats seccompDefault.
    let unconfined_c = "    securityContext:\n      seccompProfile: {type: Unconfined}\n";
    a.write_manifest("open.yaml", &pod_yaml("open", "", unconfined_c, SHOW));
    let local_c = "    securityContext:\n      seccompProfile: {type: Localhost, localhostProfile: profiles/no-mkdir.json}\n";
    a.write_manifest(
        "local.yaml",
        &pod_yaml(
            "local",
            "",
            local_c,
            "[sh, -c, 'mkdir /tmp/x 2>&1 || echo mkdir refused; echo done; sleep 1000']",
        ),
    );
    // runAsNonRoot with an image that runs as root: refused as the kubelet refuses it.
    a.write_manifest(
        "rootimage.yaml",
        &pod_yaml(
            "rootimage",
            "  securityContext: {runAsNonRoot: true}\n",
            "",
            "[sleep, '1000']",
        ),
    );

    let r = status_fields(&log_with(&a, "restricted", "done"));
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(r[set], "0000000000000000", "restricted {set}: {r:?}");
    }
    assert_eq!(r["NoNewPrivs"], "1");
    assert_eq!(r["Seccomp"], "2", "RuntimeDefault is a filter");
    assert!(log_with(&a, "restricted", "done").contains("uid=1000"));

    let t = status_fields(&log_with(&a, "tuned", "done"));
    let expected = mask(&[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_SYS_CHROOT",
        "CAP_AUDIT_WRITE",
        "CAP_NET_ADMIN",
    ]);
    assert_eq!(t["CapBnd"], expected, "{t:?}");
    assert_eq!(t["CapEff"], expected);
    assert_eq!(t["CapAmb"], "0000000000000000");
    assert_eq!(t["CapInh"], "0000000000000000");
    assert_eq!(t["Seccomp"], "2", "seccompDefault: true");
    assert_eq!(t["NoNewPrivs"], "0");

    let host = status_fields(&std::fs::read_to_string("/proc/self/status").unwrap());
    let p = status_fields(&log_with(&a, "priv", "done"));
    assert_eq!(p["CapBnd"], host["CapBnd"], "the host's bounding set");
    assert_eq!(p["CapEff"], host["CapBnd"]);
    assert_eq!(p["Seccomp"], "0", "no seccomp for a privileged container");

    let o = status_fields(&log_with(&a, "open", "done"));
    assert_eq!(o["Seccomp"], "0");

    let l = log_with(&a, "local", "done");
    assert!(
        l.contains("mkdir refused") && l.contains("Operation not permitted"),
        "{l}"
    );

    let c = a.wait_container("rootimage", "main", "CreateContainerConfigError", |c| {
        c["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let message = c["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("container has runAsNonRoot and image will run as root (pod: \"rootimage-node1_default("),
        "{message}"
    );
    assert_eq!(c["restartCount"], 0);
    assert!(
        !a.crun_list()
            .iter()
            .any(|(id, _, _)| id.contains("-main-") && {
                let uid = a.pod("rootimage").unwrap()["metadata"]["uid"]
                    .as_str()
                    .unwrap()
                    .to_string();
                id.starts_with(&uid[..12])
            }),
        "no container was created"
    );
}

#[test]
fn fs_group_sysctls_and_resource_fields_take_effect() {
    let mut a = Agent::new("fid-groups");
    let config = config_file(&a, "allowedUnsafeSysctls: [net.core.somaxconn]\n");
    a.extra_args = vec!["--config".into(), config];
    a.start();
    let spec = "  securityContext:\n    runAsUser: 1000\n    runAsGroup: 1000\n    fsGroup: 2000\n    supplementalGroups: [3000]\n    sysctls:\n    - {name: net.ipv4.ip_unprivileged_port_start, value: '80'}\n    - {name: net/core/somaxconn, value: '999'}\n  volumes:\n  - {name: disk, emptyDir: {}}\n  - {name: ram, emptyDir: {medium: Memory}}\n";
    let container = "    volumeMounts: [{name: disk, mountPath: /disk}, {name: ram, mountPath: /ram}]\n    resources:\n      limits: {cpu: 1500m, memory: 32Mi}\n    env:\n    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}\n    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}\n    - {name: CPU_REQ_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}\n";
    let script = "[sh, -c, 'id; echo x > /disk/f && echo x > /ram/f && echo wrote; stat -c \"%n %g %a\" /disk /disk/f /ram /ram/f; echo port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start) somax=$(cat /proc/sys/net/core/somaxconn); echo cpu=$CPU mem=$MEM_MI req=$CPU_REQ_M; echo done; sleep 1000']";
    a.write_manifest("owned.yaml", &pod_yaml("owned", spec, container, script));
    // An unsafe sysctl the node does not allow: the kubelet's reason and message.
    a.write_manifest(
        "msg.yaml",
        &pod_yaml(
            "msg",
            "  securityContext:\n    sysctls: [{name: kernel.msgmax, value: '65536'}]\n",
            "",
            "[sleep, '1000']",
        ),
    );
    let log = log_with(&a, "owned", "done");
    assert!(log.contains("uid=1000") && log.contains("groups="), "{log}");
    let groups = log.lines().find(|l| l.contains("uid=1000")).unwrap();
    assert!(
        groups.contains("2000") && groups.contains("3000"),
        "fsGroup and supplementalGroups: {groups}"
    );
    assert!(
        log.contains("wrote"),
        "a non-root user writes its emptyDirs: {log}"
    );
    assert!(
        log.contains("/disk 2000 2777") && log.contains("/ram 2000 2777"),
        "{log}"
    );
    assert!(
        log.contains("/disk/f 2000 ") && log.contains("/ram/f 2000 "),
        "setgid: new files get the group: {log}"
    );
    assert!(log.contains("port=80 somax=999"), "{log}");
    assert!(log.contains("cpu=2 mem=32 req=1500"), "{log}");
    // On the host, too.
    let uid = a.pod("owned").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let disk = a.root.join("pods").join(&uid).join("volumes/disk");
    let meta = std::fs::metadata(&disk).unwrap();
    assert_eq!((meta.gid(), meta.mode() & 0o7777), (2000, 0o2777));
    // The host's own settings are untouched: the pod has its own network namespace.
    let host_port =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    assert_ne!(host_port.trim(), "80");

    let c = a.wait_container("msg", "main", "SysctlForbidden", |c| {
        c["state"]["waiting"]["reason"] == "SysctlForbidden"
    });
    assert_eq!(
        c["state"]["waiting"]["message"],
        "forbidden sysctl: \"kernel.msgmax\" not allowlisted"
    );
}

/// `hostPID`: the container's process is a host process (its PID is the host's, and the
/// host sees its command line under that PID); without it, the container's command is PID 1
/// of a namespace of its own.
#[test]
fn host_pid_shows_the_hosts_processes() {
    let mut a = Agent::new("fid-hostpid");
    a.start();
    let script = "[sh, -c, 'echo pid=$$; echo done; exec sleep 1001']";
    a.write_manifest(
        "host.yaml",
        &pod_yaml("host", "  hostPID: true\n", "", script),
    );
    a.write_manifest("own.yaml", &pod_yaml("own", "", "", script));
    let pid_in = |pod: &str| -> u32 {
        let log = log_with(&a, pod, "done");
        log.lines()
            .find_map(|l| l.split("pid=").nth(1))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{pod}: no pid in {log}"))
    };
    assert_eq!(pid_in("own"), 1, "its own PID namespace");
    let pid = pid_in("host");
    assert_ne!(pid, 1, "the host's PID namespace");
    let cmdline = wait_until_or_none(Duration::from_secs(30), || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .filter(|c| c.starts_with(b"sleep\0"))
    })
    .unwrap_or_else(|| panic!("host PID {pid} is not the container's sleep"));
    assert_eq!(cmdline, b"sleep\x001001\x00");
}

fn sh(cmd: &str) {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .unwrap();
    assert!(out.status.success(), "{cmd}: {out:?}");
}

/// `mountPropagation`: a mount the host makes below a `HostToContainer` volume appears in
/// the container; a mount a privileged container makes below a `Bidirectional` one appears
/// on the host; a source that cannot propagate is refused at start with containerd's reason
/// instead of running without it.
#[test]
fn mount_propagation_reaches_across_as_asked() {
    let mut a = Agent::new("fid-propagation");
    a.start();
    let shared = a.base.join("shared");
    let private = a.base.join("private");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&private).unwrap();
    sh(&format!(
        "mount --bind {0} {0} && mount --make-shared {0}",
        shared.display()
    ));
    sh(&format!(
        "mount --bind {0} {0} && mount --make-private {0}",
        private.display()
    ));
    let volume = |path: &std::path::Path| {
        format!(
            "  volumes:\n  - {{name: v, hostPath: {{path: {}}}}}\n",
            path.display()
        )
    };
    a.write_manifest(
        "down.yaml",
        &pod_yaml(
            "down",
            &volume(&shared),
            "    volumeMounts: [{name: v, mountPath: /v, mountPropagation: HostToContainer}]\n",
            "[sh, -c, 'echo started; while [ ! -e /v/from-host/marker ]; do sleep 0.2; done; echo seen; sleep 1000']",
        ),
    );
    a.write_manifest(
        "up.yaml",
        &pod_yaml(
            "up",
            &volume(&shared),
            "    securityContext: {privileged: true}\n    volumeMounts: [{name: v, mountPath: /v, mountPropagation: Bidirectional}]\n",
            "[sh, -c, 'mkdir -p /v/from-pod && mount -t tmpfs pod /v/from-pod && echo hi > /v/from-pod/file && echo done; sleep 1000']",
        ),
    );
    a.write_manifest(
        "stuck.yaml",
        &pod_yaml(
            "stuck",
            &volume(&private),
            "    volumeMounts: [{name: v, mountPath: /v, mountPropagation: HostToContainer}]\n",
            "[sleep, '1000']",
        ),
    );
    log_with(&a, "down", "started");
    let from_host = shared.join("from-host");
    std::fs::create_dir_all(&from_host).unwrap();
    sh(&format!(
        "mount -t tmpfs host {0} && touch {0}/marker",
        from_host.display()
    ));
    log_with(&a, "down", "seen");

    log_with(&a, "up", "done");
    let file = shared.join("from-pod/file");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "hi\n",
        "the pod's mount is on the host"
    );

    let c = a.wait_container("stuck", "main", "a refused start", |c| {
        c["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a shared or slave mount"))
    });
    assert_eq!(c["state"].get("running"), None, "{c}");
}

/// `activeDeadlineSeconds`: the container runs until the deadline, then it is stopped for
/// good and the pod is Failed with the kubelet's reason and message; the Event says so too.
#[test]
fn active_deadline_fails_the_pod_for_good() {
    let mut a = Agent::new("fid-deadline");
    a.start();
    a.write_manifest(
        "job.yaml",
        &pod_yaml(
            "job",
            "  activeDeadlineSeconds: 3\n",
            "",
            "[sh, -c, 'echo done; exec sleep 1000']",
        ),
    );
    log_with(&a, "job", "done");
    let failed = wait_until_or_none(Duration::from_secs(30), || {
        a.pod("job").filter(|p| p["status"]["phase"] == "Failed")
    })
    .unwrap_or_else(|| panic!("not Failed: {:?}\n{}", a.pod("job"), a.agent_log()));
    assert_eq!(failed["status"]["reason"], "DeadlineExceeded");
    assert_eq!(
        failed["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    let running = |a: &Agent| {
        a.crun_list()
            .into_iter()
            .filter(|(_, _, status)| status == "running")
            .count()
    };
    wait_until_or_none(Duration::from_secs(15), || (running(&a) == 0).then_some(()))
        .unwrap_or_else(|| panic!("still running: {:?}", a.crun_list()));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(running(&a), 0, "never started again: {:?}", a.crun_list());
    let (ok, out, err) = a.cli(&["describe", "pod", "job"]);
    assert!(ok, "{err}");
    assert!(out.contains("DeadlineExceeded"), "{out}");
}

/// `downwardAPI` and projected `downwardAPI` volumes: the pod's labels and annotations as
/// the kubelet formats them, its name, namespace and UID, a container's limit, each file with
/// its mode (and the fsGroup's group), the volume read-only in the container.
#[test]
fn downward_api_volumes_show_the_pod() {
    let mut a = Agent::new("fid-downward");
    a.start();
    let body = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dw\n  namespace: default\n  labels: {app: gw, tier: edge}\n  annotations: {note: 'say \"hi\"'}\nspec:\n  terminationGracePeriodSeconds: 1\n  securityContext: {runAsUser: 1000, fsGroup: 2000}\n  volumes:\n  - name: info\n    downwardAPI:\n      items:\n      - {path: labels, fieldRef: {fieldPath: metadata.labels}}\n      - {path: meta/name, fieldRef: {fieldPath: metadata.name}, mode: 0400}\n      - {path: note, fieldRef: {fieldPath: \"metadata.annotations['note']\"}}\n      - {path: cpu, resourceFieldRef: {containerName: main, resource: limits.cpu, divisor: 1m}}\n  - name: proj\n    projected:\n      sources:\n      - downwardAPI: {items: [{path: uid, fieldRef: {fieldPath: metadata.uid}}]}\n  containers:\n  - name: main\n    image: IMAGE\n    resources: {limits: {cpu: 250m, memory: 16Mi}}\n    volumeMounts: [{name: info, mountPath: /info}, {name: proj, mountPath: /proj}]\n    command: [sh, -c, 'cat /info/labels; echo; echo name=$(cat /info/meta/name) note=$(cat /info/note) cpu=$(cat /info/cpu) uid=$(cat /proj/uid); stat -c \"%n %a %g\" /info/meta/name /info/labels; touch /info/x 2>/dev/null || echo readonly; echo done; sleep 1000']\n"
        .replace("IMAGE", common::IMAGE);
    a.write_manifest("dw.yaml", &body);
    let log = log_with(&a, "dw", "done");
    let uid = a.pod("dw").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(log.contains("app=\"gw\"\ntier=\"edge\"\n"), "{log}");
    assert!(
        log.contains(&format!(
            "name=dw-{} note=say \"hi\" cpu=250 uid={uid}",
            a.node
        )),
        "{log}"
    );
    assert!(
        log.contains("/info/meta/name 440 2000"),
        "mode 0400, group-readable: {log}"
    );
    assert!(log.contains("/info/labels 644 2000"), "{log}");
    assert!(log.contains("readonly"), "{log}");
}

/// `postStart`: the hook runs in the container once it has started (the docs' lifecycle
/// example writes a file the container then reads); a failing hook kills the container,
/// which the restart policy starts again, with the kubelet's Warning.
#[test]
fn post_start_hooks_run_and_a_failing_one_restarts_the_container() {
    let mut a = Agent::new("fid-poststart");
    a.start();
    a.write_manifest(
        "hook.yaml",
        &pod_yaml(
            "hook",
            "",
            "    lifecycle: {postStart: {exec: {command: [sh, -c, 'echo Hello from the postStart handler > /tmp/message']}}}\n",
            // `-s`: the hook's shell creates the file before it writes the line.
            "[sh, -c, 'while [ ! -s /tmp/message ]; do sleep 0.1; done; cat /tmp/message; echo done; sleep 1000']",
        ),
    );
    a.write_manifest(
        "bad.yaml",
        &pod_yaml(
            "bad",
            "",
            "    lifecycle: {postStart: {exec: {command: [sh, -c, 'exit 3']}}}\n",
            "[sleep, '1000']",
        ),
    );
    let log = log_with(&a, "hook", "done");
    assert!(log.contains("Hello from the postStart handler"), "{log}");
    let c = a.wait_container("bad", "main", "a restart after its failed hook", |c| {
        c["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    assert_eq!(c["ready"], false, "{c}");
    let (ok, out, err) = a.cli(&["describe", "pod", "bad"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("FailedPostStartHook") && out.contains("PostStartHook failed"),
        "{out}"
    );
}

/// Native sidecars on crun: the sidecar starts before the next init container (which waits
/// for a file the sidecar writes), keeps running beside the app, is started again when it
/// ends while the app runs on, and `get pods` shows the pod Running, not in Init.
#[test]
fn a_native_sidecar_starts_first_and_keeps_running() {
    let mut a = Agent::new("fid-sidecar");
    a.start();
    let body = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: sc, namespace: default}}\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes: [{{name: shared, emptyDir: {{}}}}]\n  initContainers:\n  - name: proxy\n    image: {img}\n    restartPolicy: Always\n    volumeMounts: [{{name: shared, mountPath: /shared}}]\n    command: [sh, -c, 'echo up >> /shared/proxy; exec sleep 1000']\n  - name: setup\n    image: {img}\n    volumeMounts: [{{name: shared, mountPath: /shared}}]\n    command: [sh, -c, 'while [ ! -e /shared/proxy ]; do sleep 0.1; done; echo setup-saw-proxy']\n  containers:\n  - name: main\n    image: {img}\n    volumeMounts: [{{name: shared, mountPath: /shared}}]\n    command: [sh, -c, 'echo main-started; exec sleep 1000']\n",
        img = common::IMAGE
    );
    a.write_manifest("sc.yaml", &body);
    a.wait_container("sc", "main", "running", |c| {
        c["state"]["running"].is_object()
    });
    let pod = a.pod("sc").unwrap();
    let init = &pod["status"]["initContainerStatuses"];
    assert!(init[0]["state"]["running"].is_object(), "{init}");
    assert_eq!(init[1]["state"]["terminated"]["exitCode"], 0, "{init}");
    let (ok, out, err) = a.cli(&["logs", "sc", "-c", "setup"]);
    assert!(ok && out.contains("setup-saw-proxy"), "{out}{err}");
    let (ok, out, _) = a.cli(&["get", "pods"]);
    assert!(
        ok && out.contains("Running") && !out.contains("Init:"),
        "{out}"
    );

    // The sidecar ends: started again, the app keeps running.
    let proxy_pid = init[0]["containerID"].as_str().unwrap().to_string();
    let id = proxy_pid.trim_start_matches("crun://");
    let killed = std::process::Command::new("crun")
        .arg("--root")
        .arg(a.root.join("crun"))
        .args(["kill", id, "KILL"])
        .status()
        .unwrap();
    assert!(killed.success());
    let c = a.wait_container("sc", "proxy", "restarted", |c| {
        c["restartCount"] == 1 && c["state"]["running"].is_object()
    });
    assert!(c["state"]["running"].is_object());
    let main = a.wait_container("sc", "main", "running", |c| {
        c["state"]["running"].is_object()
    });
    assert_eq!(main["restartCount"], 0, "{main}");
    let shared = std::fs::read_to_string(
        a.root
            .join("pods")
            .join(pod["metadata"]["uid"].as_str().unwrap())
            .join("volumes/shared/proxy"),
    )
    .unwrap();
    assert_eq!(shared, "up\nup\n");
}

/// `shareProcessNamespace`: the pod's containers see each other's processes, under a PID 1
/// of the pod's (the holder), which goes with the pod.
#[test]
fn share_process_namespace_shows_the_other_containers() {
    let mut a = Agent::new("fid-sharepid");
    a.start();
    let body = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: sp, namespace: default}}\nspec:\n  terminationGracePeriodSeconds: 1\n  shareProcessNamespace: true\n  containers:\n  - name: a\n    image: {img}\n    command: [sleep, '1001']\n  - name: b\n    image: {img}\n    command: [sh, -c, 'until ps | grep -q \"[s]leep 1001\"; do sleep 0.1; done; ps; echo pid=$$; echo done; exec sleep 1002']\n",
        img = common::IMAGE
    );
    a.write_manifest("sp.yaml", &body);
    let (log, _) = wait_until_or_none(Duration::from_secs(60), || {
        let (ok, out, _) = a.cli(&["logs", "sp", "-c", "b"]);
        (ok && out.contains("done")).then_some((out, ()))
    })
    .unwrap_or_else(|| panic!("b never saw a's process\n{}", a.agent_log()));
    assert!(log.contains("sleep 1001"), "{log}");
    let pid1 = log
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("no PID 1 in {log}"));
    assert!(
        pid1.contains("pid-holder"),
        "PID 1 is the pod's holder: {pid1}"
    );
    assert!(!log.contains("pid=1\n"), "b is not PID 1: {log}");
    let holders = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c).to_string();
                    c.contains("pid-holder") && c.contains(&a.root.display().to_string())
                })
            })
            .collect()
    };
    assert_eq!(holders().len(), 1, "one holder for the pod");
    a.remove_manifest("sp.yaml");
    wait_until_or_none(Duration::from_secs(30), || {
        holders().is_empty().then_some(())
    })
    .unwrap_or_else(|| panic!("the holder outlived its pod: {:?}", holders()));
}
