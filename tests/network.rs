//! Pod networking end to end, on real crun with Debian's reference CNI plugins
//! (containernetworking-plugins): pod IPs, hostPort, the way out through the bridge, pod to
//! pod, DNS, agent restarts, power cuts and removal. Each test has a network of its own
//! (see common/net.rs); traffic goes only to 127.0.0.1 and to the bridge and pod addresses
//! the test made.

use crate::common;

use common::net::*;
use common::*;
use std::process::Command;
use std::time::Duration;

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
    // drain, with the agent stopped, releases what the pods it stops had.
    net.agent.write_manifest(
        "idle.yaml",
        &pod_yaml("idle", "", "", r#"["sleep", "1000"]"#),
    );
    net.pod_ip("idle");
    net.agent.kill9();
    run_ok(
        Command::new(bin())
            .args(["drain", "--root-dir"])
            .arg(&net.agent.root),
    );
    assert!(net.reserved().is_empty() && net.veths().is_empty() && net.rules().is_empty());
    assert_eq!(net.calls("DEL bridge"), 2);
}

#[test]
fn an_edited_pod_takes_over_its_host_port() {
    let mut net = Net::new("net-edit", 24, None);
    net.agent.start();
    let port = free_port();
    net.agent.write_manifest("web.yaml", &web_yaml(port));
    let first = net.pod_ip("web");
    net.agent
        .wait_container("web", "main", "ready", |c| c["ready"] == true);
    // A new version (another UID) with the same hostPort: it gets the port once the old one
    // is gone, and the old version's address is released.
    let edited = web_yaml(port).replace("echo ip=", "echo edited ip=");
    net.agent.write_manifest("web.yaml", &edited);
    net.wait_log("web", "edited ip=");
    assert_eq!(
        get_eventually(&format!("http://127.0.0.1:{port}/")),
        "hello from a static pod\n"
    );
    let second = net.pod_ip("web");
    wait_until(
        "the first address released",
        Duration::from_secs(30),
        || (net.reserved() == vec![second.clone()]).then_some(()),
    );
    assert_ne!(first, second, "host-local hands out the next address");
    let log = net.agent.agent_log();
    assert!(
        !log.contains("already in use"),
        "handed over, never refused:\n{log}"
    );
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
fn a_pod_directory_removed_by_someone_does_not_leak_its_address() {
    let mut net = Net::new("net-lost", 24, None);
    net.agent.start();
    net.agent
        .write_manifest("p.yaml", &pod_yaml("p", "", "", r#"["sleep", "1000"]"#));
    let first = net.pod_ip("p");
    let status = net.agent.wait_running("p", "main");
    // What an old drain or a cleanup script did: the pod's mounts and directory gone while
    // its container runs; then the container dies.
    let uid = net.agent.pod("p").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = net.agent.root.join("pods").join(&uid);
    let mut mounts: Vec<String> = net
        .agent
        .mounts_below_base()
        .into_iter()
        .filter(|m| m.starts_with(&format!("{}/", dir.display())))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        Command::new("umount").args(["-l", &m]).status().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let id = status["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("crun://");
    Command::new("crun")
        .arg("--root")
        .arg(net.agent.root.join("crun"))
        .args(["kill", id, "KILL"])
        .status()
        .unwrap();
    let second = wait_until("the pod networked again", Duration::from_secs(60), || {
        let p = net.agent.pod("p")?;
        let running = p["status"]["containerStatuses"][0]["state"]
            .get("running")
            .is_some();
        let ip = p["status"]["podIP"].as_str()?.to_string();
        (running && p["status"]["containerStatuses"][0]["restartCount"] == 1).then_some(ip)
    });
    assert_ne!(first, second);
    assert_eq!(
        net.reserved(),
        vec![second],
        "the first address was released"
    );
}
