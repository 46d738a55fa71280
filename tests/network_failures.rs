//! Pod networking under bad input, on real crun with the reference CNI plugins: a broken
//! configuration, a missing plugin, an exhausted subnet, a host port already taken: each is
//! named on the pod, which waits in ContainerCreating while everything else runs. Also the
//! default network written on first use, and `doctor`.

use crate::common;

use common::net::*;
use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_broken_conflist_is_named_and_host_network_pods_run() {
    let mut net = Net::new("net-broken", 24, None);
    let conf = net.agent.base.join("net.d/10-test.conflist");
    fs::write(&conf, "{\"cniVersion\": \"1.0.0\", \"name\": ").unwrap();
    net.agent.start();
    net.agent
        .write_manifest("p.yaml", &pod_yaml("p", "", "", r#"["sleep", "1000"]"#));
    net.agent.write_manifest(
        "h.yaml",
        &pod_yaml("h", "  hostNetwork: true\n", "", r#"["sleep", "1000"]"#),
    );
    let m = net.waiting_message("p");
    assert!(
        m.contains(&conf.display().to_string()) && m.contains("not valid JSON"),
        "{m}"
    );
    net.agent.wait_running("h", "main");
    assert_eq!(net.calls(""), 0, "no plugin ran");
    assert!(
        !conf.with_file_name("10-staticlet.conflist").exists(),
        "never replaced by the default"
    );
}

#[test]
fn a_missing_plugin_is_named() {
    let mut net = Net::new("net-noplugin", 24, Some(r#"[{"type":"nosuchplugin"}]"#));
    net.agent.start();
    net.agent
        .write_manifest("p.yaml", &pod_yaml("p", "", "", r#"["sleep", "1000"]"#));
    let m = net.waiting_message("p");
    assert!(
        m.contains("CNI plugin \"nosuchplugin\" not found in"),
        "{m}"
    );
    assert!(m.contains("cni-bin"), "{m}");
}

#[test]
fn an_exhausted_subnet_and_a_taken_host_port_leave_the_pod_waiting() {
    // A /30: one address for pods besides the gateway.
    let mut net = Net::new("net-full", 30, None);
    net.agent.start();
    net.agent
        .write_manifest("a.yaml", &pod_yaml("a", "", "", r#"["sleep", "1000"]"#));
    let ip = net.pod_ip("a");
    net.agent
        .write_manifest("b.yaml", &pod_yaml("b", "", "", r#"["sleep", "1000"]"#));
    let m = net.waiting_message("b");
    assert!(m.contains("no IP addresses available"), "{m}");
    assert!(m.contains("plugin type=\"bridge\" failed (add)"), "{m}");
    net.agent.remove_manifest("b.yaml");
    // A port something else on this host has.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    net.agent.write_manifest(
        "c.yaml",
        &pod_yaml(
            "c",
            "",
            &format!("    ports: [{{containerPort: 80, hostPort: {port}}}]\n"),
            r#"["sleep", "1000"]"#,
        ),
    );
    let m = net.waiting_message("c");
    assert!(
        m.contains(&format!("hostPort {port}/TCP")) && m.contains("already in use"),
        "{m}"
    );
    // Nothing leaked from the failures; the first pod runs on.
    net.agent.wait_running("a", "main");
    assert_eq!(net.reserved(), vec![ip]);
}

#[test]
fn the_default_network_is_written_on_first_use() {
    require_plugins();
    /// Removes the default bridge after the agent (declared first, dropped last), unless
    /// another agent's pods still use it.
    struct Bridge;
    impl Drop for Bridge {
        fn drop(&mut self) {
            if fs::read_dir("/sys/class/net/staticlet0/brif").is_ok_and(|d| d.count() == 0) {
                let _ = Command::new("ip")
                    .args(["link", "del", "staticlet0"])
                    .output();
            }
        }
    }
    let _bridge = Bridge;
    let mut agent = Agent::new("net-default");
    let conf = agent.base.join("net.d");
    // The default subnet: the bridge is the one every agent with the default network on
    // this host shares, and it has one address.
    let cidr = "10.77.0.0/24";
    agent.extra_args = vec!["--cni-conf-dir".into(), conf.display().to_string()];
    agent.start();
    agent.write_manifest("p.yaml", &pod_yaml("p", "", "", r#"["sleep", "1000"]"#));
    let ip = wait_until("the pod IP", Duration::from_secs(60), || {
        agent.pod("p")?["status"]["podIP"]
            .as_str()
            .map(String::from)
    });
    assert!(
        ip.starts_with(cidr.trim_end_matches("0/24")),
        "{ip} in {cidr}"
    );
    let written: Value =
        serde_json::from_slice(&fs::read(conf.join("10-staticlet.conflist")).unwrap()).unwrap();
    assert_eq!(written["plugins"][0]["bridge"], "staticlet0");
    assert_eq!(
        written["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        cidr
    );
    let store = Path::new("/var/lib/cni/networks/staticlet");
    assert!(
        store.join(&ip).exists(),
        "host-local's default store holds {ip}"
    );
    agent.remove_manifest("p.yaml");
    wait_until("the address released", Duration::from_secs(60), || {
        (!store.join(&ip).exists()).then_some(())
    });
}

#[test]
fn doctor_names_a_missing_plugin_of_the_network() {
    let net = Net::new(
        "net-doctor",
        24,
        Some(r#"[{"type":"bridge","ipMasq":true,"ipam":{"type":"nosuch-ipam"}}]"#),
    );
    let out = Command::new(bin())
        .args(["doctor", "--root-dir"])
        .arg(&net.agent.root)
        .arg("--cni-conf-dir")
        .arg(net.agent.base.join("net.d"))
        .args(["--cni-bin-dir", "/usr/lib/cni"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL  CNI plugins: \"nosuch-ipam\" not found in /usr/lib/cni"),
        "{text}"
    );
    assert!(text.contains("ok    iptables"), "{text}");
}
