//! The kubelet API and what a gateway costs the API server (issue 15), against a real
//! kube-apiserver v1.20 with etcd on loopback and real containers: `kubectl logs [-f]` of a
//! mirror pod through the API server to the kubelet API, who the kubelet API refuses, and a
//! quiet gateway's requests counted in the API server's audit log.

use crate::common;

use common::tls::TestCa;
use common::*;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::apiserver::Cluster;
use crate::gateway::*;

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
            .and_then(staticlet::sys::timefmt::parse_rfc3339)
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
