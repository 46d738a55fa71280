use super::*;

fn write(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("staticlet-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn staticlet_configuration_is_read() {
    let p = write(
        "full.yaml",
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nnodeName: gw-7\nstaticPodPath: /etc/m\n\
         staticPodURL: https://pods.example/gw\nstaticPodURLHeader: {Authorization: [Bearer x]}\nfileCheckFrequency: 5s\n\
         httpCheckFrequency: 1m\nrootDir: /data/staticlet\npodLogsDir: /data/logs\nruntimePath: /usr/bin/crun\n\
         statusAddress: none\ncontainerLogMaxSize: 1Mi\ncontainerLogMaxFiles: 3\nnodeLabels: {board: rpi4}\n\
         systemReserved: {memory: 64Mi}\ninsecureRegistries: [\"127.0.0.1:5000\"]\n",
    );
    let c = load_file(&p).unwrap();
    assert_eq!(c.node_name, "gw-7");
    assert_eq!(c.static_pod_path, Some(PathBuf::from("/etc/m")));
    assert_eq!(c.static_pod_url.as_deref(), Some("https://pods.example/gw"));
    assert_eq!(c.static_pod_url_header["Authorization"], vec!["Bearer x"]);
    assert_eq!(c.file_check_frequency, Duration::from_secs(5));
    assert_eq!(c.http_check_frequency, Duration::from_secs(60));
    assert_eq!(c.root_dir, PathBuf::from("/data/staticlet"));
    assert_eq!(c.status_address, None);
    assert_eq!(c.container_log_max_size, 1024 * 1024);
    assert_eq!(c.container_log_max_files, 3);
    assert_eq!(c.node_labels["board"], "rpi4");
    assert_eq!(c.system_reserved["memory"], "64Mi");
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    let p = write(
        "typo.yaml",
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nstaticPodPth: /etc/m\n",
    );
    let err = load_file(&p).unwrap_err().to_string();
    assert!(err.contains("staticPodPth"), "{err}");
    assert!(err.contains("typo.yaml"), "{err}");
}

#[test]
fn bad_values_name_the_field() {
    let p = write("bad.yaml", "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nfileCheckFrequency: often\n");
    let err = load_file(&p).unwrap_err().to_string();
    assert!(
        err.contains("fileCheckFrequency") && err.contains("often"),
        "{err}"
    );
    let p = write("addr.yaml", "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nstatusAddress: localhost\n");
    assert!(load_file(&p)
        .unwrap_err()
        .to_string()
        .contains("statusAddress"));
}

#[test]
fn kubelet_configuration_uses_shared_fields_and_names_the_rest() {
    let p = write(
        "kubelet.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /etc/kubernetes/manifests\n\
         fileCheckFrequency: 10s\ncontainerLogMaxSize: 5Mi\ncontainerLogMaxFiles: 2\nclusterDNS: [10.0.0.10]\n\
         authentication: {anonymous: {enabled: false}, webhook: {enabled: true, cacheTTL: 1m}, x509: {clientCAFile: ca.crt}}\n\
         authorization: {mode: AlwaysAllow}\nport: 10260\naddress: 127.0.0.1\ntlsCertFile: /pki/k.crt\ntlsPrivateKeyFile: /pki/k.key\n",
    );
    let c = load_file(&p).unwrap();
    assert_eq!(
        c.static_pod_path,
        Some(PathBuf::from("/etc/kubernetes/manifests"))
    );
    assert_eq!(c.file_check_frequency, Duration::from_secs(10));
    assert_eq!(c.container_log_max_size, 5 * 1024 * 1024);
    assert_eq!(c.container_log_max_files, 2);
    assert!(c.ignored_fields.is_empty(), "{:?}", c.ignored_fields);
    assert_eq!(
        c.network.cluster_dns,
        vec!["10.0.0.10".parse::<std::net::IpAddr>().unwrap()]
    );
    let k = &c.kubelet_api;
    assert_eq!(k.port, 10260);
    assert_eq!(k.address.to_string(), "127.0.0.1");
    assert_eq!(k.tls_cert_file, Some(PathBuf::from("/pki/k.crt")));
    assert_eq!(
        k.client_ca_file,
        Some(p.parent().unwrap().join("ca.crt")),
        "relative to the file"
    );
    assert_eq!(k.authn_cache_ttl, Duration::from_secs(60));
    assert_eq!(k.authz_mode, AuthzMode::AlwaysAllow);
}

#[test]
fn kubelet_api_defaults_and_refusals() {
    let k = KubeletApi::default();
    assert_eq!(
        (k.port, k.webhook_authn, k.authz_mode),
        (10250, true, AuthzMode::Webhook)
    );
    let head = "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\n";
    let c = load_file(&write(
        "api.yaml",
        &format!("{head}nodeIP: 192.168.7.2\nport: 0\neventBufferMaxEvents: 50\neventBufferMaxBytes: 64Ki\n"),
    ))
    .unwrap();
    assert_eq!(c.node_ip.unwrap().to_string(), "192.168.7.2");
    assert_eq!(c.kubelet_api.port, 0);
    assert_eq!((c.event_limits.events, c.event_limits.bytes), (50, 65536));
    for (body, field) in [
        ("nodeIP: gw.local\n", "nodeIP"),
        ("port: 70000\n", "port"),
        ("tlsCertFile: /a.crt\n", "tlsCertFile"),
        ("authorization: {mode: RBAC}\n", "authorization.mode"),
        (
            "authentication: {anonymous: {enabled: true}}\n",
            "authentication.anonymous.enabled",
        ),
        (
            "authentication: {x509: {clientCAfile: x}}\n",
            "clientCAfile",
        ),
        ("eventBufferMaxEvents: 1\n", "eventBufferMaxEvents"),
        ("eventBufferMaxBytes: 1\n", "eventBufferMaxBytes"),
    ] {
        let e = load_file(&write("bad.yaml", &format!("{head}{body}")))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{body}: {e}");
    }
}

#[test]
fn wrong_kind_is_refused() {
    let p = write("pod.yaml", "apiVersion: v1\nkind: Pod\n");
    assert!(load_file(&p)
        .unwrap_err()
        .to_string()
        .contains("expected apiVersion"));
}

#[test]
fn flag_helpers() {
    let mut h = BTreeMap::new();
    parse_header_flag("a:x,b:y", &mut h).unwrap();
    parse_header_flag("a:z", &mut h).unwrap();
    assert_eq!(h["a"], vec!["x", "z"]);
    assert!(parse_header_flag("nocolon", &mut h).is_err());
    let mut l = BTreeMap::new();
    parse_labels_flag("x=1,y=2", &mut l).unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(parse_status_address("none"), Ok(None));
}

#[test]
fn type_errors_name_the_file_and_the_field() {
    let p = write(
        "types.yaml",
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nfileCheckFrequency: 20\n",
    );
    let err = load_file(&p).unwrap_err().to_string();
    assert!(
        err.contains("types.yaml") && err.contains("fileCheckFrequency: invalid type"),
        "{err}"
    );
    let p = write(
        "nested.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodURLHeader: {Authorization: [ok, {a: b}]}\n",
    );
    let err = load_file(&p).unwrap_err().to_string();
    assert!(
        err.contains("nested.yaml") && err.contains("staticPodURLHeader.Authorization[1]"),
        "{err}"
    );
}

#[test]
fn relative_paths_are_taken_from_the_file_directory() {
    let p = write(
        "relative.yaml",
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nstaticPodPath: manifests\n\
         rootDir: ./state\npodLogsDir: ../logs\nruntimePath: crun\nkubeconfig: kc\nstaticPodURLCAFile: ca.pem\n",
    );
    let dir = p.parent().unwrap();
    let c = load_file(&p).unwrap();
    assert_eq!(c.static_pod_path, Some(dir.join("manifests")));
    assert_eq!(c.root_dir, dir.join("./state"));
    assert_eq!(c.pod_logs_dir, dir.join("../logs"));
    assert_eq!(
        c.runtime_path,
        PathBuf::from("crun"),
        "a bare name is looked up on PATH"
    );
    assert_eq!(c.kubeconfig, Some(dir.join("kc")));
    assert_eq!(c.manifest_url_ca_file, Some(dir.join("ca.pem")));
}

#[test]
fn cgroup_root_defaults_from_the_root_dir_and_is_distinct_per_root_dir() {
    let mut c = Config::default();
    assert_eq!(
        c.cgroup_root(),
        "/staticlet",
        "the default root dir keeps /staticlet"
    );
    c.root_dir = PathBuf::from("/data/a");
    let a = c.cgroup_root();
    assert!(
        a.starts_with("/staticlet-") && a.len() == "/staticlet-".len() + 8,
        "{a}"
    );
    assert_eq!(a, default_cgroup_root(Path::new("/data/a/")), "stable");
    assert_ne!(a, default_cgroup_root(Path::new("/data/b")));
    c.cgroup_root = Some("/edge/pods".into());
    assert_eq!(c.cgroup_root(), "/edge/pods");
}

#[test]
fn cgroup_root_is_read_from_both_kinds_and_checked() {
    let ours = write(
        "cg.yaml",
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\ncgroupRoot: /gw/pods/\n",
    );
    assert_eq!(load_file(&ours).unwrap().cgroup_root(), "/gw/pods");
    let kubelet = write(
        "cg-kubelet.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupRoot: /edge\n",
    );
    let c = load_file(&kubelet).unwrap();
    assert_eq!(c.cgroup_root.as_deref(), Some("/edge"));
    assert!(c.ignored_fields.is_empty(), "{:?}", c.ignored_fields);
    for bad in ["/", "relative", "/a/../b", "/a//b", "/a b"] {
        let p = write(
            "cg-bad.yaml",
            &format!("apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\ncgroupRoot: {bad:?}\n"),
        );
        let err = load_file(&p).unwrap_err().to_string();
        assert!(err.contains("cgroupRoot"), "{bad}: {err}");
    }
}
