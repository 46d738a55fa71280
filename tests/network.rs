//! Pod networking end to end, on real crun with Debian's reference CNI plugins
//! (containernetworking-plugins): pod IPs, hostPort, the way out through the bridge, pod to
//! pod, DNS, agent restarts and power cuts, removal, and bad input.
//!
//! Every test has its own network: a bridge named after the test process (at most 15
//! characters), a /24 of 10.213.0.0/16 nothing else here uses, a conf dir, and host-local's
//! store in the test's directory. Traffic goes only to 127.0.0.1 and to the bridge and pod
//! addresses the test made. The plugins are called through logging wrappers, so the tests
//! can count ADDs. Everything is removed even when a test fails.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "loopback"];

/// An agent with a network of its own.
struct Net {
    agent: Agent,
    bridge: String,
    /// `10.213.N`: the /24 is `{prefix}.0/24`, the gateway `{prefix}.1`.
    prefix: String,
    ipam: PathBuf,
}

fn require_plugins() {
    for p in PLUGINS {
        assert!(
            Path::new("/usr/lib/cni").join(p).exists(),
            "/usr/lib/cni/{p} is missing: apt-get install containernetworking-plugins (tests/setup-host)"
        );
    }
}

impl Net {
    /// `plugins` replaces the conflist's plugin list (a JSON array) when given; `prefix_len`
    /// is the subnet's size.
    fn new(tag: &str, prefix_len: u8, plugins: Option<&str>) -> Net {
        require_plugins();
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let octet = (pid.wrapping_mul(7).wrapping_add(n * 37)) % 250 + 1;
        let prefix = format!("10.213.{octet}");
        let bridge = format!("stl{}n{n}", pid % 100_000);
        let mut agent = Agent::new(tag);
        let conf = agent.base.join("net.d");
        let bin = agent.base.join("cni-bin");
        let ipam = agent.base.join("ipam");
        fs::create_dir_all(&conf).unwrap();
        fs::create_dir_all(&bin).unwrap();
        for p in PLUGINS {
            let w = bin.join(p);
            fs::write(
                &w,
                format!(
                    "#!/bin/sh\necho \"$CNI_COMMAND {p} $CNI_CONTAINERID\" >> {}\nexec /usr/lib/cni/{p} \"$@\"\n",
                    agent.base.join("cni-calls.log").display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let default_plugins = format!(
            r#"[{{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":true,"hairpinMode":true,
                "ipam":{{"type":"host-local","ranges":[[{{"subnet":"{prefix}.0/{prefix_len}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}},
               {{"type":"portmap","capabilities":{{"portMappings":true}},"snat":true}},
               {{"type":"loopback"}}]"#,
            ipam.display()
        );
        let plugins = plugins.map(String::from).unwrap_or(default_plugins);
        fs::write(
            conf.join("10-test.conflist"),
            format!(r#"{{"cniVersion":"1.0.0","name":"{bridge}","plugins":{plugins}}}"#),
        )
        .unwrap();
        agent.extra_args = vec![
            "--cni-conf-dir".into(),
            conf.display().to_string(),
            "--cni-bin-dir".into(),
            bin.display().to_string(),
        ];
        Net {
            agent,
            bridge,
            prefix,
            ipam,
        }
    }

    fn gateway(&self) -> String {
        format!("{}.1", self.prefix)
    }

    fn calls(&self, what: &str) -> usize {
        fs::read_to_string(self.agent.base.join("cni-calls.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(what))
            .count()
    }

    fn pod_ip(&self, pod: &str) -> String {
        wait_until(
            &format!("{pod}'s pod IP\n{}", self.agent.agent_log()),
            Duration::from_secs(60),
            || {
                let p = self.agent.pod(pod)?;
                p["status"]["podIP"].as_str().map(String::from)
            },
        )
    }

    /// The addresses host-local holds in this network's store.
    fn reserved(&self) -> Vec<String> {
        let mut ips: Vec<String> = fs::read_dir(self.ipam.join(&self.bridge))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("10."))
            .collect();
        ips.sort();
        ips
    }

    /// Host-side veths attached to the bridge.
    fn veths(&self) -> Vec<String> {
        fs::read_dir(format!("/sys/class/net/{}/brif", self.bridge))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    }

    /// The NAT rules the plugins made for this network (their comments name it).
    fn rules(&self) -> Vec<String> {
        let out = Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.starts_with("-A") && l.contains(&format!("name: \\\"{}\\\"", self.bridge))
            })
            .map(String::from)
            .collect()
    }

    fn logs(&self, pod: &str) -> String {
        self.agent.cli(&["logs", pod]).1
    }

    fn wait_log(&self, pod: &str, needle: &str) -> String {
        wait_until(
            &format!("{needle:?} in {pod}'s log\n{}", self.agent.agent_log()),
            Duration::from_secs(60),
            || Some(self.logs(pod)).filter(|l| l.contains(needle)),
        )
    }

    fn waiting_message(&self, pod: &str) -> String {
        wait_until(
            &format!("{pod} waiting with a message\n{}", self.agent.agent_log()),
            Duration::from_secs(60),
            || {
                let p = self.agent.pod(pod)?;
                let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
                (w["reason"] == "ContainerCreating")
                    .then(|| w["message"].as_str().map(String::from))
                    .flatten()
            },
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The agent's own teardown (drain in Agent's drop) releases the attachments; what a
        // failed test may leave is removed here: the bridge, and any rule naming the network.
        self.agent.kill9();
        let _ = Command::new(bin())
            .args(["drain", "--root-dir"])
            .arg(&self.agent.root)
            .output();
        let mut chains = Vec::new();
        for rule in self.rules() {
            let args: Vec<String> = shell_words(&rule.replacen("-A", "-D", 1));
            // The per-pod chains the rule is in or jumps to (never the plugins' shared ones).
            for w in args.windows(2).filter(|w| w[0] == "-D" || w[0] == "-j") {
                if w[1].starts_with("CNI-") && !w[1].starts_with("CNI-HOSTPORT-") {
                    chains.push(w[1].clone());
                }
            }
            let _ = Command::new("iptables")
                .arg("-t")
                .arg("nat")
                .args(&args)
                .output();
        }
        for chain in chains {
            for op in ["-F", "-X"] {
                let _ = Command::new("iptables")
                    .args(["-t", "nat", op, &chain])
                    .output();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Splits an iptables-save rule into arguments (double quotes with \" escapes).
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut chars) = (false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn get(url: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    agent.get(url).call().ok()?.body_mut().read_to_string().ok()
}

fn get_eventually(url: &str) -> String {
    wait_until(&format!("GET {url}"), Duration::from_secs(30), || get(url))
}

/// busybox httpd bound to the pod IP alone (so only a probe to the pod IP succeeds), with a
/// hostPort, a readiness probe, and the pod's view of its network on stdout.
fn web_yaml(host_port: u16) -> String {
    pod_yaml(
        "web",
        "  hostAliases:\n  - {ip: 10.1.2.3, hostnames: [alias.example]}\n",
        &format!(
            "    env:\n    - name: POD_IP\n      valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}\n    ports:\n    - {{containerPort: 80, hostPort: {host_port}}}\n    readinessProbe:\n      httpGet: {{path: /, port: 80}}\n      periodSeconds: 1\n"
        ),
        r#"["sh", "-c", "echo ip=$POD_IP; cat /etc/hosts /etc/resolv.conf; exec httpd -f -p $POD_IP:80 -h /www"]"#,
    )
}

#[test]
fn a_pod_gets_an_ip_its_host_port_and_the_probes_reach_it() {
    let mut net = Net::new("net-ip", 24, None);
    let dns = format!("{}.10", net.prefix);
    net.agent.extra_args.extend([
        "--cluster-dns".to_string(),
        dns.clone(),
        "--cluster-domain".into(),
        "cluster.local".into(),
    ]);
    net.agent.start();
    let port = free_port();
    net.agent.write_manifest("web.yaml", &web_yaml(port));
    let ip = net.pod_ip("web");
    assert!(ip.starts_with(&format!("{}.", net.prefix)), "{ip}");
    let pod = net.agent.pod("web").unwrap();
    assert_eq!(pod["status"]["podIPs"], serde_json::json!([{"ip": ip}]));
    // Ready only if the readiness probe reached httpd on the pod IP.
    net.agent
        .wait_container("web", "main", "ready", |c| c["ready"] == true);
    let page = "hello from a static pod\n";
    assert_eq!(get_eventually(&format!("http://{ip}/")), page);
    assert_eq!(get_eventually(&format!("http://127.0.0.1:{port}/")), page);
    assert_eq!(
        get_eventually(&format!("http://{}:{port}/", net.gateway())),
        page
    );
    let log = net.wait_log("web", "nameserver");
    assert!(log.contains(&format!("ip={ip}")), "{log}");
    assert!(log.contains(&format!("{ip}\tweb-node1")), "{log}");
    assert!(log.contains("10.1.2.3\talias.example"), "{log}");
    assert!(
        log.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
            && log.contains(&format!("nameserver {dns}\noptions ndots:5")),
        "{log}"
    );
    let (_, wide, _) = net.agent.cli(&["get", "pods", "-o", "wide"]);
    assert!(wide.contains(&ip), "{wide}");
}

#[test]
fn pods_reach_each_other_and_a_server_on_the_bridge_gateway() {
    let mut net = Net::new("net-p2p", 24, None);
    net.agent.start();
    net.agent.write_manifest("web.yaml", &web_yaml(free_port()));
    let web = net.pod_ip("web");
    // The bridge exists now: a server on its gateway address, which only pods can reach.
    let server = tiny_http::Server::http(format!("{}:0", net.gateway())).unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let serve = std::thread::spawn(move || {
        if let Ok(Some(req)) = server.recv_timeout(Duration::from_secs(60)) {
            let _ = req.respond(tiny_http::Response::from_string("from the host\n"));
        }
    });
    let client = pod_yaml(
        "client",
        "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53]\n    searches: [example.test]\n    options: [{name: ndots, value: \"2\"}, {name: edns0}]\n",
        "",
        &format!(
            r#"["sh", "-c", "cat /etc/resolv.conf; until wget -q -O- http://{gw}:{port}/; do sleep 0.2; done; until wget -q -O- http://{web}/; do sleep 0.2; done; echo done; exec sleep 1000"]"#,
            gw = net.gateway()
        ),
    );
    net.agent.write_manifest("client.yaml", &client);
    let log = net.wait_log("client", "done");
    assert!(log.contains("from the host"), "{log}");
    assert!(log.contains("hello from a static pod"), "{log}");
    assert!(
        log.starts_with("search example.test\nnameserver 192.0.2.53\noptions ndots:2 edns0\n"),
        "{log}"
    );
    serve.join().unwrap();
}

#[test]
fn an_agent_restart_keeps_the_ip_and_adds_nothing() {
    let mut net = Net::new("net-restart", 24, None);
    net.agent.start();
    let port = free_port();
    net.agent.write_manifest("web.yaml", &web_yaml(port));
    let ip = net.pod_ip("web");
    assert_eq!(net.calls("ADD bridge"), 1);
    net.agent.kill9();
    net.agent.start();
    net.agent.wait_running("web", "main");
    assert_eq!(net.pod_ip("web"), ip);
    wait_until("a CNI CHECK", Duration::from_secs(30), || {
        (net.calls("CHECK bridge") == 1).then_some(())
    });
    assert_eq!(
        net.calls("ADD"),
        4,
        "one ADD per plugin (bridge, its host-local, portmap, loopback), once"
    );
    assert_eq!(net.reserved(), vec![ip.clone()]);
    assert_eq!(
        get_eventually(&format!("http://127.0.0.1:{port}/")),
        "hello from a static pod\n"
    );
}

#[test]
fn removal_releases_the_ip_the_veth_and_the_rules() {
    let mut net = Net::new("net-remove", 24, None);
    net.agent.start();
    net.agent.write_manifest("web.yaml", &web_yaml(free_port()));
    let ip = net.pod_ip("web");
    assert_eq!(net.reserved(), vec![ip]);
    assert_eq!(net.veths().len(), 1);
    assert!(!net.rules().is_empty(), "masquerade and hostPort rules");
    net.agent.remove_manifest("web.yaml");
    wait_until("the pod to go", Duration::from_secs(60), || {
        net.agent.pod("web").is_none().then_some(())
    });
    wait_until(
        "its network to be released",
        Duration::from_secs(30),
        || {
            (net.reserved().is_empty() && net.veths().is_empty() && net.rules().is_empty())
                .then_some(())
        },
    );
    assert_eq!(net.calls("DEL bridge"), 1);
}

#[test]
fn after_a_power_cut_pods_come_back_networked_without_stale_ips() {
    let mut net = Net::new("net-power", 24, None);
    net.agent.start();
    let port = free_port();
    net.agent.write_manifest("web.yaml", &web_yaml(port));
    net.agent.write_manifest(
        "idle.yaml",
        &pod_yaml("idle", "", "", r#"["sleep", "1000"]"#),
    );
    let before = [net.pod_ip("web"), net.pod_ip("idle")];
    // The power goes: the agent, the monitors and the containers die at once, and what
    // lived in memory (the namespace mounts) is gone.
    net.agent.kill9();
    for pid in net.agent.monitors() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for (_, pid, _) in net.agent.crun_list() {
        if pid > 0 {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    let mut mounts = net.agent.mounts_below_base();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        Command::new("umount").args(["-l", &m]).status().unwrap();
    }
    net.agent.start();
    let after = wait_until("both pods networked again", Duration::from_secs(90), || {
        let ips = [net.agent.pod("web")?, net.agent.pod("idle")?].map(|p| {
            (p["status"]["containerStatuses"][0]["state"]
                .get("running")
                .is_some())
            .then(|| p["status"]["podIP"].as_str().map(String::from))
            .flatten()
        });
        match ips {
            [Some(a), Some(b)] => Some([a, b]),
            _ => None,
        }
    });
    let mut expected = after.to_vec();
    expected.sort();
    assert_eq!(
        net.reserved(),
        expected,
        "only the new addresses; before: {before:?}"
    );
    assert_eq!(
        get_eventually(&format!("http://127.0.0.1:{port}/")),
        "hello from a static pod\n"
    );
    assert_eq!(net.veths().len(), 2);
}

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
