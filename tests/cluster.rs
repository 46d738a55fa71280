//! The cluster sees what the gateway saw (issue 15), against a real kube-apiserver v1.20 with
//! etcd on loopback and real containers: Events as a kubelet posts them, also those made
//! while the API server was down (in order, with their times, within the buffer's bound).
//! The kubelet API and the request budget are in tests/kubelet_api.rs.
//!
//! The API server is checked as an admin over HTTPS, with the requests kubectl makes
//! (`pods/<name>/log`, `events?fieldSelector=involvedObject.name=...`).

use crate::common;

use common::*;
use serde_json::Value;
use std::io::Read;
use std::time::{Duration, SystemTime};

use crate::apiserver::Cluster;
use crate::gateway::*;

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
        staticlet::sys::timefmt::parse_rfc3339(e["firstTimestamp"].as_str().unwrap()).unwrap()
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
