//! The cluster sees what the gateway saw (issue 15), against a real kube-apiserver v1.20 with
//! etcd on loopback and real containers: Events as a kubelet posts them (also those made
//! while the API server was down, within the buffer's bound), `kubectl logs [-f]` of a mirror
//! pod through the API server and the kubelet API, who the kubelet API refuses, and what a
//! quiet gateway costs the API server, counted in its audit log.
//!
//! The API server is checked as an admin over HTTPS, with the requests kubectl makes
//! (`pods/<name>/log`, `events?fieldSelector=involvedObject.name=...`).

mod common;

use common::tls::TestCa;
use common::*;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

#[path = "support/apiserver/cluster.rs"]
mod cluster;

use cluster::Cluster;

/// kube-apiserver flags to reach kubelets: its client certificate (CN
/// kube-apiserver-kubelet-client, O system:masters) and the node's InternalIP.
fn kubelet_client(dir: &Path) -> Vec<String> {
    vec![
        format!(
            "--kubelet-client-certificate={}",
            dir.join("kubelet-client.crt").display()
        ),
        format!(
            "--kubelet-client-key={}",
            dir.join("kubelet-client.key").display()
        ),
        "--kubelet-preferred-address-types=InternalIP".into(),
    ]
}

/// An agent with the node's client certificate, the kubelet API on a port of its own and
/// `--node-ip 127.0.0.1`, so the API server reaches it on loopback.
fn agent(api: &Cluster, tag: &str, extra: &[String]) -> (Agent, u16) {
    let port = free_port();
    let mut a = Agent::new(tag);
    a.extra_args = vec![
        "--kubeconfig".into(),
        api.kubeconfig("cert"),
        "--node-ip".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--client-ca-file".into(),
        api.dir.join("ca.crt").display().to_string(),
    ];
    a.extra_args.extend(extra.iter().cloned());
    a.start();
    (a, port)
}

fn mirror_uid(api: &Cluster, name: &str) -> String {
    api.mirror("default", name)
        .and_then(|m| m["metadata"]["uid"].as_str().map(String::from))
        .unwrap_or_default()
}

fn find<'a>(events: &'a [Value], reason: &str, message: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["reason"] == reason && e["message"].as_str().unwrap_or("").contains(message))
}

fn wait_event(
    api: &Cluster,
    a: &Agent,
    object: &str,
    reason: &str,
    message: &str,
    min_count: u64,
) -> Value {
    wait_until(
        &format!(
            "event {reason} {message:?} (count >= {min_count}) of {object}; have {:#?}\n{}",
            api.events_of(object)
                .iter()
                .map(|e| format!("{} {} x{}", e["reason"], e["message"], e["count"]))
                .collect::<Vec<_>>(),
            a.agent_log()
        ),
        Duration::from_secs(60),
        || {
            find(&api.events_of(object), reason, message)
                .filter(|e| e["count"].as_u64().unwrap_or(0) >= min_count)
                .cloned()
        },
    )
}

fn image_pod(name: &str, image: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: {command}\n"
    )
}

#[test]
fn events_of_a_started_a_crash_looping_and_an_unpullable_pod() {
    let api = Cluster::start_with("events", kubelet_client);
    let (a, _) = agent(&api, "events", &[]);
    a.write_manifest(
        "web.yaml",
        &pod_yaml(
            "web",
            "",
            "",
            "[sh, -c, 'echo hello from web; exec sleep 100000']",
        ),
    );
    a.write_manifest(
        "crash.yaml",
        &pod_yaml(
            "crash",
            "",
            "",
            "[sh, -c, 'echo crashing; sleep 1; exit 3']",
        ),
    );
    // Nothing listens on port 9 of loopback: the pull fails at once.
    a.write_manifest(
        "pull.yaml",
        &image_pod("pull", "127.0.0.1:9/none/busybox:1", "[sleep, '1']"),
    );

    // A started pod: Pulled (present), Created, Started, on the mirror pod, as the kubelet's.
    let started = wait_event(
        &api,
        &a,
        "web-node1",
        "Started",
        "Started container main",
        1,
    );
    let uid = mirror_uid(&api, "web");
    let o = &started["involvedObject"];
    assert_eq!(
        (o["kind"].as_str(), o["namespace"].as_str()),
        (Some("Pod"), Some("default"))
    );
    assert_eq!(o["uid"], uid.as_str(), "the mirror pod's UID: {started}");
    assert_eq!(o["fieldPath"], "spec.containers{main}");
    assert_eq!(started["source"]["component"], "kubelet");
    assert_eq!(started["source"]["host"], "node1");
    assert_eq!(started["type"], "Normal");
    let web = api.events_of("web-node1");
    let present = format!("Container image \"{IMAGE}\" already present on machine");
    assert!(find(&web, "Pulled", &present).is_some(), "{web:#?}");
    assert!(
        find(&web, "Created", "Created container main").is_some(),
        "{web:#?}"
    );

    // A crash loop: its repeats are one Event each, with a count.
    let back_off = wait_event(
        &api,
        &a,
        "crash-node1",
        "BackOff",
        "Back-off restarting failed container",
        2,
    );
    assert_eq!(back_off["type"], "Warning");
    assert_ne!(
        back_off["firstTimestamp"], back_off["lastTimestamp"],
        "{back_off}"
    );
    let crash = api.events_of("crash-node1");
    let started = find(&crash, "Started", "Started container main").unwrap();
    assert!(started["count"].as_u64().unwrap() >= 2, "{crash:#?}");
    assert_eq!(
        crash.iter().filter(|e| e["reason"] == "Started").count(),
        1,
        "{crash:#?}"
    );

    // A failed pull: the kubelet's three events.
    wait_event(
        &api,
        &a,
        "pull-node1",
        "Failed",
        "Failed to pull image \"127.0.0.1:9/none/busybox:1\"",
        1,
    );
    wait_event(&api, &a, "pull-node1", "Failed", "Error: ErrImagePull", 1);
    wait_event(
        &api,
        &a,
        "pull-node1",
        "BackOff",
        "Back-off pulling image \"127.0.0.1:9/none/busybox:1\"",
        1,
    );

    // The node's own.
    wait_event(&api, &a, "node1", "Starting", "Starting staticlet", 1);

    // The same, locally.
    let (ok, out, err) = a.cli(&["describe", "pod", "crash"]);
    assert!(ok, "{err}");
    for want in [
        "Name:         crash-node1",
        "Last State:     Terminated",
        "Exit Code:    3",
        "Restart Count:",
        "Back-off restarting failed container",
        "Started container main",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert!(out.contains(" (x"), "counts shown:\n{out}");

    // kubectl logs through the API server, to the kubelet API's self-signed certificate
    // (this API server does not verify kubelets' certificates).
    let (code, _) = api.req("GET", "/api/v1/namespaces/default/pods/web-node1/log", None);
    let log = api
        .stream("/api/v1/namespaces/default/pods/web-node1/log")
        .map(|mut r| {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        });
    assert_eq!(
        log,
        Ok("hello from web\n".to_string()),
        "(plain GET said {code})\n{}",
        a.agent_log()
    );
    assert!(a.root.join("pki/kubelet.crt").is_file() && a.root.join("pki/kubelet.key").is_file());
}

#[test]
fn events_made_while_the_api_server_is_down_arrive_after_it_in_order_within_the_bound() {
    let api = Cluster::start("outage-events");
    let base = unique_dir("outage-events-config");
    let config = base.join("staticlet.yaml");
    std::fs::write(
        &config,
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\neventBufferMaxEvents: 12\n",
    )
    .unwrap();
    let (a, _) = agent(
        &api,
        "outage-events",
        &["--config".into(), config.display().to_string()],
    );
    a.write_manifest("web.yaml", &pod_yaml("web", "", "", "[sleep, '100000']"));
    wait_event(
        &api,
        &a,
        "web-node1",
        "Started",
        "Started container main",
        1,
    );

    api.stop_apiserver();
    let down = SystemTime::now();
    let names: Vec<String> = (1..=5).map(|i| format!("late{i}")).collect();
    for n in &names {
        a.write_manifest(
            &format!("{n}.yaml"),
            &pod_yaml(n, "", "", "[sleep, '100000']"),
        );
        a.wait_running(n, "main");
    }
    // Kept on disk, within the bound, while they wait.
    let file = a.root.join("events.json");
    let saved: Value = wait_until("the event buffer on disk", Duration::from_secs(20), || {
        let v: Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
        (v["entries"]
            .as_array()?
            .iter()
            .any(|e| e["subject"]["name"] == "late5-node1"))
        .then_some(v)
    });
    let entries = saved["entries"].as_array().unwrap();
    assert!(entries.len() <= 12, "{saved:#}");
    assert!(saved["dropped"].as_u64().unwrap() > 0, "{saved:#}");
    std::thread::sleep(Duration::from_secs(2));

    api.start_apiserver();
    let back = SystemTime::now();
    let notice = wait_event(&api, &a, "node1", "EventsDropped", "events were dropped", 1);
    let dropped = notice["count"].as_u64().unwrap();
    // Everything else of the outage arrives: 5 pods x (Pulled, Created, Started), minus the
    // oldest dropped.
    let outage = || -> Vec<Value> {
        names
            .iter()
            .flat_map(|n| api.events_of(&format!("{n}-node1")))
            .collect()
    };
    let posted = wait_until(
        &format!(
            "{} events of the outage; have {:?}\n{}",
            15 - dropped,
            outage().len(),
            a.agent_log()
        ),
        Duration::from_secs(60),
        || Some(outage()).filter(|e| e.len() as u64 + dropped == 15),
    );
    let time = |e: &Value| {
        staticlet::timefmt::parse_rfc3339(e["firstTimestamp"].as_str().unwrap()).unwrap()
    };
    for e in &posted {
        let t = time(e);
        assert!(
            t >= down - Duration::from_secs(1) && t < back,
            "kept its own time: {e}"
        );
        let name = e["involvedObject"]["name"]
            .as_str()
            .unwrap()
            .trim_end_matches("-node1");
        assert_eq!(
            e["involvedObject"]["uid"],
            mirror_uid(&api, name).as_str(),
            "on the mirror pod: {e}"
        );
    }
    // Posted in the order they happened: the API server numbers them as they come.
    let mut by_arrival = posted.clone();
    by_arrival.sort_by_key(|e| {
        e["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    });
    let times: Vec<SystemTime> = by_arrival.iter().map(time).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{by_arrival:#?}");
    // The newest survived; the oldest went.
    assert!(find(
        &api.events_of("late5-node1"),
        "Started",
        "Started container main"
    )
    .is_some());
    wait_until("the buffer file to go", Duration::from_secs(20), || {
        (!file.exists()).then_some(())
    });
    let _ = std::fs::remove_dir_all(&base);
}

/// A TLS client for the kubelet API: trusting `ca`, with `cert`/`key` if given.
fn kubelet_client_agent(ca: &Path, identity: Option<(Vec<u8>, Vec<u8>)>) -> ureq::Agent {
    let pem = std::fs::read(ca).unwrap();
    let ca = ureq::tls::Certificate::from_pem(&pem).unwrap();
    let mut tls =
        ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]));
    if let Some((c, k)) = identity {
        let cert = ureq::tls::Certificate::from_pem(&c).unwrap();
        let key = ureq::tls::PrivateKey::from_pem(&k).unwrap();
        tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn kubelet_get(
    agent: &ureq::Agent,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let mut req = agent.get(&format!("https://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut r = req.call().map_err(|e| e.to_string())?;
    Ok((
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    ))
}

#[test]
fn kubectl_logs_and_follow_reach_the_kubelet_api_and_strangers_are_refused() {
    let api = Cluster::start_with("kubelet-api", |dir| {
        let mut f = kubelet_client(dir);
        f.push(format!(
            "--kubelet-certificate-authority={}",
            dir.join("ca.crt").display()
        ));
        f
    });
    let d = api.dir.clone();
    let (a, port) = agent(
        &api,
        "kubelet-api",
        &[
            "--tls-cert-file".into(),
            d.join("kubelet.crt").display().to_string(),
            "--tls-private-key-file".into(),
            d.join("kubelet.key").display().to_string(),
        ],
    );
    a.write_manifest(
        "talk.yaml",
        &pod_yaml(
            "talk",
            "",
            "",
            "[sh, -c, 'i=0; while true; do echo line $i; i=$((i+1)); sleep 0.3; done']",
        ),
    );
    a.wait_running("talk", "main");
    wait_until("the mirror pod", Duration::from_secs(30), || {
        api.mirror("default", "talk")
    });

    // The Node says where the kubelet API is; the pods' hostIP is --node-ip.
    let node = api.get("/api/v1/nodes/node1").unwrap();
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        port
    );
    assert_eq!(
        node["status"]["addresses"][0],
        serde_json::json!({"type": "InternalIP", "address": "127.0.0.1"})
    );
    wait_until(
        "hostIP 127.0.0.1 on the mirror",
        Duration::from_secs(20),
        || {
            api.mirror("default", "talk")
                .filter(|m| m["status"]["hostIP"] == "127.0.0.1")
        },
    );

    // kubectl logs: the API server verifies our certificate (from the files) and sends its own.
    let path = "/api/v1/namespaces/default/pods/talk-node1/log";
    let mut text = String::new();
    api.stream(path)
        .unwrap_or_else(|e| panic!("{path}: {e:?}\n{}", a.agent_log()))
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.starts_with("line 0\n"), "{text}");
    let mut tail = String::new();
    api.stream(&format!("{path}?tailLines=1"))
        .unwrap()
        .read_to_string(&mut tail)
        .unwrap();
    assert_eq!(tail.lines().count(), 1, "{tail}");

    // kubectl logs -f: lines written after the request arrive while it is open.
    let seen = text.lines().count();
    let mut follow = api.stream(&format!("{path}?follow=true")).unwrap();
    let t0 = Instant::now();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while got.lines().count() < seen + 5 {
        let n = follow.read(&mut buf).unwrap();
        assert!(n > 0, "the follow ended early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        assert!(t0.elapsed() < Duration::from_secs(30), "{got}");
    }
    assert!(got.contains(&format!("line {}\n", seen + 3)), "{got}");
    drop(follow);

    // Straight to the kubelet API: who may, who may not.
    let ca = d.join("ca.crt");
    let pair = |n: &str| {
        Some((
            std::fs::read(d.join(format!("{n}.crt"))).unwrap(),
            std::fs::read(d.join(format!("{n}.key"))).unwrap(),
        ))
    };
    let logs = "/containerLogs/default/talk-node1/main?tailLines=1";
    let anonymous = kubelet_client_agent(&ca, None);
    assert_eq!(
        kubelet_get(&anonymous, port, logs, None).map(|r| r.0),
        Ok(401)
    );
    let nobody = kubelet_get(&kubelet_client_agent(&ca, pair("nobody")), port, logs, None).unwrap();
    assert_eq!(
        nobody,
        (
            403,
            "Forbidden (user=nobody, verb=get, resource=nodes, subresource=proxy)\n".into()
        )
    );
    let node_token = std::fs::read_to_string(d.join("node.token")).unwrap();
    let as_node = kubelet_get(&anonymous, port, logs, Some(&node_token)).unwrap();
    assert_eq!(as_node.0, 403, "{as_node:?}");
    assert!(as_node.1.contains("user=system:node:node1"), "{as_node:?}");
    assert_eq!(
        kubelet_get(&anonymous, port, logs, Some("not-a-token")).map(|r| r.0),
        Ok(401)
    );
    let admin_token = std::fs::read_to_string(d.join("admin.token")).unwrap();
    let admin = kubelet_get(&anonymous, port, logs, Some(&admin_token)).unwrap();
    assert_eq!(admin.0, 200, "{admin:?}");
    assert!(admin.1.starts_with("line "), "{admin:?}");
    let apiserver = kubelet_client_agent(&ca, pair("kubelet-client"));
    assert_eq!(
        kubelet_get(&apiserver, port, "/healthz", None),
        Ok((200, "ok".into()))
    );
    assert_eq!(
        kubelet_get(&apiserver, port, "/pods", None).map(|r| r.0),
        Ok(404),
        "nothing else is served"
    );
    // A certificate from another CA does not get through the handshake.
    let other = TestCa::new("other-ca");
    let (c, k) = other.client("kube-apiserver-kubelet-client", "system:masters");
    let stranger = kubelet_client_agent(&ca, Some((c.into_bytes(), k.into_bytes())));
    assert!(kubelet_get(&stranger, port, logs, None).is_err());
}

#[test]
fn a_quiet_gateway_costs_the_api_server_at_most_8_requests_a_minute() {
    let api = Cluster::start_with("audit", |dir| {
        let policy = dir.join("audit-policy.yaml");
        std::fs::write(
            &policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
        )
        .unwrap();
        vec![
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", dir.join("audit.log").display()),
        ]
    });
    let (a, _) = agent(&api, "audit", &[]);
    let names: Vec<String> = (0..10).map(|i| format!("quiet{i}")).collect();
    for n in &names {
        a.write_manifest(
            &format!("{n}.yaml"),
            &pod_yaml(n, "", "", "[sleep, '100000']"),
        );
    }
    for n in &names {
        a.wait_running(n, "main");
        wait_event(
            &api,
            &a,
            &format!("{n}-node1"),
            "Started",
            "Started container main",
            1,
        );
        wait_until("the mirror to be running", Duration::from_secs(30), || {
            api.mirror("default", n)
                .filter(|m| m["status"]["phase"] == "Running")
        });
    }
    std::thread::sleep(Duration::from_secs(5));
    let from = SystemTime::now();
    let window = Duration::from_secs(90);
    std::thread::sleep(window);
    let to = SystemTime::now();
    let mut ids = std::collections::BTreeMap::new();
    for e in api.audit() {
        if e["user"]["username"] != "system:node:node1" {
            continue;
        }
        let Some(t) = e["requestReceivedTimestamp"]
            .as_str()
            .and_then(staticlet::timefmt::parse_rfc3339)
        else {
            continue;
        };
        if t >= from && t < to {
            let what = format!(
                "{} {}{}",
                e["verb"].as_str().unwrap_or(""),
                e["objectRef"]["resource"].as_str().unwrap_or(""),
                e["objectRef"]["subresource"]
                    .as_str()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default()
            );
            ids.insert(e["auditID"].as_str().unwrap_or("").to_string(), what);
        }
    }
    let per_minute = ids.len() as f64 * 60.0 / window.as_secs_f64();
    eprintln!(
        "{} requests in {window:?} ({per_minute:.1}/min): {:?}",
        ids.len(),
        ids.values().collect::<Vec<_>>()
    );
    assert!(per_minute <= 8.0, "{per_minute}/min: {ids:#?}");
    assert!(
        !ids.values().any(|w| w == "list pods"),
        "no pod list at steady state: {ids:#?}"
    );
    assert!(
        ids.values().any(|w| w == "update leases"),
        "the Lease is renewed: {ids:#?}"
    );
}
