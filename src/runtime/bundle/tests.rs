use super::*;
use crate::manifest::{self, Source};
use serde_json::json;

fn pod(yaml_containers: &str, spec_extra: &str) -> StaticPod {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: ops, labels: {{app: w}}}}\nspec:\n{spec_extra}  containers:\n{yaml_containers}"
    );
    manifest::load(yaml.as_bytes(), &Source::File("/m/web.yaml".into()), "gw1").unwrap()
}

fn input<'a>(pod: &'a StaticPod, image: &'a ImageDefaults) -> BundleInput<'a> {
    BundleInput {
        pod,
        container: &pod.pod.spec.containers[0],
        image,
        rootfs: "/r/rootfs".into(),
        namespaces: PodNamespaces {
            net: Some("/p/ns/net".into()),
            ipc: Some("/p/ns/ipc".into()),
            uts: Some("/p/ns/uts".into()),
            pid: None,
        },
        etc_files: vec![("/etc/hosts".into(), "/p/etc/hosts".into())],
        shm: Some("/p/shm".into()),
        volumes: [("data".to_string(), PathBuf::from("/host/data"))]
            .into_iter()
            .collect(),
        sub_paths: Default::default(),
        cgroups_path: "/staticlet/podX/c-0".into(),
        pids_limit: Some(512),
        hostname: "web-gw1".into(),
        host_ip: "10.1.2.3".into(),
        pod_ip: String::new(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        security: security(pod),
        allocatable: Allocatable {
            cpu_milli: 4000,
            memory: 8 << 30,
            ephemeral_storage: 100 << 30,
        },
    }
}

fn security(pod: &StaticPod) -> Security {
    let settings = crate::runtime::security::Settings {
        host_caps: crate::runtime::security::host_capabilities(),
        ..Default::default()
    };
    crate::runtime::security::decide(pod, &pod.pod.spec.containers[0], "", &settings).unwrap()
}

fn image() -> ImageDefaults {
    ImageDefaults {
        entrypoint: vec!["/entry".into()],
        cmd: vec!["serve".into()],
        env: vec![
            "PATH=/bin".into(),
            "FROM_IMAGE=1".into(),
            "OVERRIDE=image".into(),
        ],
        working_dir: Some("/srv".into()),
    }
}

fn json_of(spec: &Spec) -> serde_json::Value {
    serde_json::to_value(spec).unwrap()
}

#[test]
fn args_follow_command_and_args_rules() {
    let img = image();
    let c = |cmd: Option<Vec<&str>>, args: Option<Vec<&str>>| Container {
        command: cmd.map(|v| v.into_iter().map(String::from).collect()),
        args: args.map(|v| v.into_iter().map(String::from).collect()),
        ..Default::default()
    };
    assert_eq!(process_args(&c(None, None), &img), vec!["/entry", "serve"]);
    assert_eq!(
        process_args(&c(None, Some(vec!["x"])), &img),
        vec!["/entry", "x"]
    );
    assert_eq!(process_args(&c(Some(vec!["sh"]), None), &img), vec!["sh"]);
    assert_eq!(
        process_args(&c(Some(vec!["sh"]), Some(vec!["-c", "y"])), &img),
        vec!["sh", "-c", "y"]
    );
}

#[test]
fn env_merges_image_pod_and_downward_api() {
    let p = pod(
        "  - name: c\n    image: busybox\n    env:\n    - {name: OVERRIDE, value: pod}\n    - {name: REF, value: 'x-$(OVERRIDE)-$$(KEEP)'}\n    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}\n    - {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}\n    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}\n    - {name: HOSTIP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}\n    - {name: APP, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}\n",
        "",
    );
    let img = image();
    let env = environment(&input(&p, &img)).unwrap();
    let get = |k: &str| {
        env.iter()
            .find_map(|e| e.strip_prefix(&format!("{k}=")))
            .map(String::from)
    };
    assert_eq!(get("PATH").as_deref(), Some("/bin"));
    assert_eq!(get("FROM_IMAGE").as_deref(), Some("1"));
    assert_eq!(get("OVERRIDE").as_deref(), Some("pod"));
    assert_eq!(get("REF").as_deref(), Some("x-pod-$(KEEP)"));
    assert_eq!(get("POD").as_deref(), Some("web-gw1"));
    assert_eq!(get("NS").as_deref(), Some("ops"));
    assert_eq!(get("UID").as_deref(), Some(p.uid()));
    assert_eq!(get("NODE").as_deref(), Some("gw1"));
    assert_eq!(get("HOSTIP").as_deref(), Some("10.1.2.3"));
    assert_eq!(get("APP").as_deref(), Some("w"));
    assert_eq!(get("HOSTNAME").as_deref(), Some("web-gw1"));
}

#[test]
fn security_context_and_user() {
    let p = pod(
        "  - name: c\n    image: busybox\n    securityContext:\n      readOnlyRootFilesystem: true\n      allowPrivilegeEscalation: false\n      capabilities: {add: [NET_ADMIN], drop: [NET_RAW, CAP_KILL]}\n",
        "",
    );
    let img = image();
    let mut i = input(&p, &img);
    i.uid = 1000;
    i.gid = 2000;
    i.additional_gids = vec![3000];
    let v = json_of(&generate(&i).unwrap());
    assert_eq!(v["root"]["readonly"], true);
    assert_eq!(v["process"]["user"]["uid"], 1000);
    assert_eq!(v["process"]["user"]["gid"], 2000);
    assert_eq!(v["process"]["user"]["additionalGids"][0], 3000);
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert_eq!(v["process"]["cwd"], "/srv");
    let caps: Vec<String> =
        serde_json::from_value(v["process"]["capabilities"]["bounding"].clone()).unwrap();
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
    assert!(!caps.contains(&"CAP_KILL".to_string()));
    assert!(caps.contains(&"CAP_CHOWN".to_string()));
    for set in ["inheritable", "ambient"] {
        assert_eq!(v["process"]["capabilities"][set], json!([]), "{set}");
    }
    assert!(v["linux"]["maskedPaths"].as_array().unwrap().len() > 3);
}

#[test]
fn seccomp_and_sysctls_reach_the_spec() {
    let p = pod(
        "  - name: c\n    image: busybox\n",
        "  securityContext:\n    seccompProfile: {type: RuntimeDefault}\n    sysctls: [{name: net/ipv4/ip_unprivileged_port_start, value: '80'}]\n",
    );
    let img = image();
    let v = json_of(&generate(&input(&p, &img)).unwrap());
    assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert!(v["linux"]["seccomp"]["syscalls"].as_array().unwrap().len() > 5);
    assert_eq!(
        v["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"],
        "80"
    );
}

#[test]
fn resource_field_refs_resolve_as_the_kubelet_does() {
    let p = pod(
        "  - name: c\n    image: busybox\n    resources:\n      limits: {cpu: 1500m, memory: 64Mi}\n      requests: {cpu: 250m}\n    env:\n    - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}\n    - {name: CPU_LIMIT_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}\n    - {name: CPU_REQ, valueFrom: {resourceFieldRef: {resource: requests.cpu}}}\n    - {name: MEM_LIMIT_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}\n    - {name: MEM_REQ, valueFrom: {resourceFieldRef: {resource: requests.memory}}}\n    - {name: DISK, valueFrom: {resourceFieldRef: {resource: limits.ephemeral-storage, divisor: 1Gi}}}\n    - {name: OTHER, valueFrom: {resourceFieldRef: {containerName: side, resource: limits.cpu, divisor: 1m}}}\n  - name: side\n    image: busybox\n",
        "",
    );
    let img = image();
    let env = environment(&input(&p, &img)).unwrap();
    let get = |k: &str| {
        env.iter()
            .find_map(|e| e.strip_prefix(&format!("{k}=")))
            .map(String::from)
            .unwrap()
    };
    assert_eq!(get("CPU_LIMIT"), "2", "1.5 cores rounded up");
    assert_eq!(get("CPU_LIMIT_M"), "1500");
    assert_eq!(get("CPU_REQ"), "1");
    assert_eq!(get("MEM_LIMIT_MI"), "64");
    assert_eq!(
        get("MEM_REQ"),
        (64 << 20).to_string(),
        "the request defaults to the limit"
    );
    assert_eq!(get("DISK"), "100", "no limit: the node's allocatable");
    assert_eq!(get("OTHER"), "4000", "another container without a limit");
}

#[test]
fn privileged_gets_everything() {
    let p = pod("  - name: c\n    image: busybox\n    securityContext: {privileged: true, capabilities: {drop: [ALL]}}\n", "");
    let img = image();
    let v = json_of(&generate(&input(&p, &img)).unwrap());
    assert_eq!(
        v["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len(),
        crate::runtime::security::host_capabilities().len(),
        "the host's bounding set"
    );
    assert_eq!(v["process"]["capabilities"]["ambient"], json!([]));
    assert!(v["linux"].get("maskedPaths").is_none());
    assert_eq!(
        v["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
}

#[test]
fn namespaces_hostname_and_mounts() {
    let p = pod(
        "  - name: c\n    image: busybox\n    volumeMounts:\n    - {name: data, mountPath: /data, readOnly: true}\n    - {name: data, mountPath: /sub, subPath: a/b}\n",
        "  volumes:\n  - {name: data, hostPath: {path: /host/data}}\n",
    );
    let img = image();
    let mut i = input(&p, &img);
    // Without its staging point, a subPath mount is an error, never `<volume>/<subPath>`.
    assert!(generate(&i).unwrap_err().to_string().contains("subPath"));
    i.sub_paths.insert(1, "/r/subpaths/1".into());
    let v = json_of(&generate(&i).unwrap());
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.contains(&json!({"type": "network", "path": "/p/ns/net"})));
    assert!(ns.contains(&json!({"type": "ipc", "path": "/p/ns/ipc"})));
    assert!(ns.contains(&json!({"type": "uts", "path": "/p/ns/uts"})));
    assert!(ns.contains(&json!({"type": "pid"})));
    assert_eq!(v["hostname"], "web-gw1");
    let mounts = v["mounts"].as_array().unwrap();
    let find = |d: &str| {
        mounts
            .iter()
            .find(|m| m["destination"] == d)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("/data")["source"], "/host/data");
    assert!(find("/data")["options"]
        .as_array()
        .unwrap()
        .contains(&json!("ro")));
    assert_eq!(find("/sub")["source"], "/r/subpaths/1");
    assert_eq!(find("/etc/hosts")["source"], "/p/etc/hosts");
    assert_eq!(find("/dev/shm")["source"], "/p/shm");
    assert_eq!(v["linux"]["cgroupsPath"], "/staticlet/podX/c-0");
    assert_eq!(v["linux"]["resources"]["pids"]["limit"], 512);
}

#[test]
fn host_network_uses_host_namespaces() {
    let p = pod("  - name: c\n    image: busybox\n", "  hostNetwork: true\n");
    let img = image();
    let mut i = input(&p, &img);
    i.namespaces = PodNamespaces {
        net: None,
        uts: None,
        ipc: Some("/p/ns/ipc".into()),
        pid: None,
    };
    let v = json_of(&generate(&i).unwrap());
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    assert!(!ns
        .iter()
        .any(|n| n["type"] == "network" || n["type"] == "uts"));
    assert!(v.get("hostname").is_none());
}

#[test]
fn resources_map_to_cgroup_limits() {
    let p = pod(
        "  - name: c\n    image: busybox\n    resources:\n      limits: {cpu: 500m, memory: 64Mi}\n      requests: {cpu: 250m}\n",
        "",
    );
    let r = serde_json::to_value(resources(&p.pod.spec.containers[0], Some(64), false).unwrap())
        .unwrap();
    assert_eq!(r["pids"]["limit"], 64);
    assert_eq!(r["devices"][0], json!({"allow": false, "access": "rwm"}));
    assert_eq!(r["cpu"]["quota"], 50_000);
    assert_eq!(r["cpu"]["period"], 100_000);
    assert_eq!(r["cpu"]["shares"], 256);
    assert_eq!(r["memory"]["limit"], 64 * 1024 * 1024);
    let none = pod("  - name: c\n    image: busybox\n", "");
    let r = serde_json::to_value(resources(&none.pod.spec.containers[0], None, false).unwrap())
        .unwrap();
    assert!(r.get("cpu").is_none() && r.get("memory").is_none());
}

#[test]
fn no_command_at_all_is_an_error() {
    let p = pod("  - name: c\n    image: busybox\n", "");
    let img = ImageDefaults::default();
    assert!(matches!(
        generate(&input(&p, &img)),
        Err(BundleError::NoCommand)
    ));
}

/// An image with a huge `Env` merged with a pod's: linear, not a search per variable. The
/// quadratic merge needs some 4·10¹⁰ string comparisons here (minutes, then hours on a slow
/// machine); the linear one a few seconds even in a loaded debug build (14 s seen on CI). The
/// bound sits far above the linear cost and far below the quadratic one, so it only fails for
/// the wrong complexity, not for a slow machine.
#[test]
fn large_environments_merge_in_linear_time() {
    let p = pod("  - name: c\n    image: busybox\n", "");
    let mut img = image();
    let n = 200_000;
    img.env = (0..n).map(|i| format!("IMG_{i}={i}")).collect();
    let mut i = input(&p, &img);
    let mut c = i.container.clone();
    c.env = (0..n)
        .map(|k| crate::manifest::pod::EnvVar {
            name: format!("IMG_{}", n - 1 - k),
            value: Some(format!("$(IMG_{k})-pod")),
            ..Default::default()
        })
        .collect();
    i.container = &c;
    let began = std::time::Instant::now();
    let env = environment(&i).unwrap();
    assert!(
        began.elapsed() < std::time::Duration::from_secs(240),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(env.len(), n + 2, "the image variables, PATH and HOSTNAME");
    assert_eq!(env[0], "IMG_0=0-pod-pod");
    assert!(env.contains(&"HOSTNAME=web-gw1".to_string()));
}
