//! The manifest URL against a real HTTPS server on loopback with a test CA.

use crate::common;

use common::tls::TestCa;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test server answers, and what it saw.
#[derive(Default)]
struct Served {
    status: u16,
    body: Vec<u8>,
    headers_seen: Vec<(String, String)>,
    requests: usize,
}

struct Server {
    port: u16,
    state: Arc<Mutex<Served>>,
    server: Arc<tiny_http::Server>,
}

impl Server {
    fn start(ca: &TestCa) -> Server {
        let (server, port) = ca.https_server();
        let state = Arc::new(Mutex::new(Served {
            status: 200,
            ..Default::default()
        }));
        let (s, st) = (server.clone(), state.clone());
        std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let resp = {
                    let mut g = st.lock().unwrap();
                    g.requests += 1;
                    g.headers_seen = req
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect();
                    tiny_http::Response::from_data(g.body.clone()).with_status_code(g.status)
                };
                let _ = req.respond(resp);
            }
        });
        Server {
            port,
            state,
            server,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/pods", self.port)
    }

    fn serve(&self, status: u16, body: &str) {
        let mut g = self.state.lock().unwrap();
        g.status = status;
        g.body = body.as_bytes().to_vec();
    }

    fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    fn stop(&self) {
        self.server.unblock();
    }
}

fn pod_list(pods: &[(&str, &str)]) -> String {
    let items: Vec<String> = pods
        .iter()
        .map(|(name, cmd)| format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"terminationGracePeriodSeconds":1,"containers":[{{"name":"main","image":"{IMAGE}","command":["sleep","{cmd}"]}}]}}}}"#))
        .collect();
    format!(
        r#"{{"apiVersion":"v1","kind":"PodList","items":[{}]}}"#,
        items.join(",")
    )
}

fn url_agent(tag: &str, server: &Server, ca: Option<&std::path::Path>, headers: &str) -> Agent {
    let mut a = Agent::new(tag);
    let config = a.base.join("config.yaml");
    std::fs::write(&config, "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nhttpCheckFrequency: 1s\n").unwrap();
    a.extra_args = vec![
        "--config".into(),
        config.display().to_string(),
        "--manifest-url".into(),
        server.url(),
    ];
    if let Some(ca) = ca {
        a.extra_args
            .extend(["--manifest-url-ca-file".into(), ca.display().to_string()]);
    }
    if !headers.is_empty() {
        a.extra_args
            .extend(["--manifest-url-header".into(), headers.into()]);
    }
    a
}

fn uid_of(a: &Agent, pod: &str) -> Option<String> {
    a.pod(pod)
        .and_then(|p| p["metadata"]["uid"].as_str().map(String::from))
}

#[test]
fn url_pods_follow_the_server() {
    let ca = TestCa::new("url-test-ca");
    let server = Server::start(&ca);
    server.serve(200, &pod_list(&[("fromurl", "1000")]));
    let ca_file = ca.write(
        &std::env::temp_dir(),
        &format!("url-ca-{}.pem", std::process::id()),
    );
    let mut a = url_agent(
        "url",
        &server,
        Some(&ca_file),
        "X-Gateway:gw1,Authorization:Bearer s3cret",
    );
    a.start();
    a.wait_running("fromurl", "main");
    let p = a.pod("fromurl").unwrap();
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/config.source"],
        "http"
    );
    let seen = server.state.lock().unwrap().headers_seen.clone();
    assert!(
        seen.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("x-gateway") && v == "gw1"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && v == "Bearer s3cret"),
        "{seen:?}"
    );

    // A changed body replaces the pod.
    let first = uid_of(&a, "fromurl").unwrap();
    server.serve(200, &pod_list(&[("fromurl", "2000")]));
    wait_until("the replaced pod", Duration::from_secs(30), || {
        uid_of(&a, "fromurl").filter(|u| *u != first)
    });
    a.wait_running("fromurl", "main");

    // An empty body and a server error keep the pods.
    let current = uid_of(&a, "fromurl").unwrap();
    server.serve(200, "");
    wait_until(
        "the empty body to be reported",
        Duration::from_secs(10),
        || a.agent_log().contains("the body is empty").then_some(()),
    );
    server.serve(500, "oops");
    wait_until("the 500 to be reported", Duration::from_secs(10), || {
        a.agent_log().contains("answered 500").then_some(())
    });
    assert_eq!(uid_of(&a, "fromurl").as_deref(), Some(current.as_str()));

    // An oversized body is refused, the pods stay.
    server.serve(
        200,
        &format!(
            "{}{}",
            pod_list(&[("fromurl", "3000")]),
            " ".repeat(11 * 1024 * 1024)
        ),
    );
    wait_until(
        "the oversized body to be refused",
        Duration::from_secs(20),
        || a.agent_log().contains("larger than 10 MB").then_some(()),
    );
    assert_eq!(uid_of(&a, "fromurl").as_deref(), Some(current.as_str()));

    // A valid empty PodList removes them.
    server.serve(200, r#"{"apiVersion":"v1","kind":"PodList","items":[]}"#);
    wait_until("the pod to go", Duration::from_secs(30), || {
        a.pod("fromurl").is_none().then_some(())
    });
    server.stop();
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn a_certificate_that_does_not_verify_is_refused() {
    let ca = TestCa::new("untrusted-ca");
    let server = Server::start(&ca);
    server.serve(200, &pod_list(&[("never", "1000")]));
    let mut a = url_agent("badca", &server, None, "");
    a.start();
    wait_until("the TLS refusal", Duration::from_secs(20), || {
        a.agent_log()
            .contains("TLS certificate not trusted")
            .then_some(())
    });
    assert!(a.pod("never").is_none());
    assert!(
        server.requests() == 0,
        "no request got through without a verified certificate"
    );
    server.stop();
}

#[test]
fn boot_offline_starts_the_cached_pods() {
    let ca = TestCa::new("cache-ca");
    let server = Server::start(&ca);
    server.serve(200, &pod_list(&[("cached", "1000")]));
    let ca_file = ca.write(
        &std::env::temp_dir(),
        &format!("cache-ca-{}.pem", std::process::id()),
    );
    let mut first = url_agent("cache1", &server, Some(&ca_file), "");
    first.start();
    first.wait_running("cached", "main");
    let uid = uid_of(&first, "cached").unwrap();
    let cache = first.root.join("url-cache");
    assert!(cache.join("meta.json").exists());
    server.stop();

    // A gateway that boots with the server gone: a fresh root dir holding only the cache.
    let mut second = url_agent("cache2", &server, Some(&ca_file), "");
    std::fs::create_dir_all(second.root.join("url-cache")).unwrap();
    for f in std::fs::read_dir(&cache).unwrap().flatten() {
        std::fs::copy(f.path(), second.root.join("url-cache").join(f.file_name())).unwrap();
    }
    drop(first);
    second.start();
    second.wait_running("cached", "main");
    assert_eq!(
        uid_of(&second, "cached").as_deref(),
        Some(uid.as_str()),
        "URL pod UIDs derive from the URL, not the node or the run"
    );
    assert!(second
        .agent_log()
        .contains("starting from the cached version fetched at"));
    let _ = std::fs::remove_file(ca_file);
}

fn cache_meta(a: &Agent) -> String {
    std::fs::read_to_string(a.root.join("url-cache/meta.json")).unwrap_or_default()
}

/// Waits until the server has answered `n` more requests.
fn polls(server: &Server, n: usize) {
    let start = server.requests();
    wait_until(&format!("{n} more polls"), Duration::from_secs(30), || {
        (server.requests() >= start + n).then_some(())
    });
}

#[test]
fn a_body_that_is_not_a_pod_list_keeps_the_pods_and_the_cache() {
    let ca = TestCa::new("portal-ca");
    let server = Server::start(&ca);
    let good = pod_list(&[("kept", "1000")]);
    server.serve(200, &good);
    let ca_file = ca.write(
        &std::env::temp_dir(),
        &format!("portal-ca-{}.pem", std::process::id()),
    );
    let mut a = url_agent("portal", &server, Some(&ca_file), "");
    a.start();
    a.wait_running("kept", "main");
    let uid = uid_of(&a, "kept").unwrap();
    let meta = cache_meta(&a);
    assert!(meta.contains("sha256"), "{meta}");

    let bodies = [
        // A captive portal's login page.
        "<!DOCTYPE html>\n<html><head><title>Hotel WiFi</title></head>\n<body>Please log in</body></html>\n",
        // A proxy's plain-text answer.
        "Access denied by policy",
        // An object of another kind.
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"}}"#,
        // A list of something else.
        "apiVersion: v1\nkind: ConfigMapList\nitems: []\n",
        // A PodList whose items are not objects.
        r#"{"apiVersion":"v1","kind":"PodList","items":["a","b"]}"#,
    ];
    for body in bodies {
        let lines_before = a.agent_log().lines().count();
        server.serve(200, body);
        polls(&server, 2);
        assert_eq!(
            uid_of(&a, "kept").as_deref(),
            Some(uid.as_str()),
            "the pod stays after {body:?}\n{}",
            a.agent_log()
        );
        assert_eq!(cache_meta(&a), meta, "the cache stays after {body:?}");
        let problems = a.http("/manifests").unwrap_or_default();
        assert!(
            problems.contains(&server.url()) && problems.contains("not a Pod or a PodList"),
            "{body:?} is shown as a problem: {problems}"
        );
        let log = a.agent_log();
        let reports = log
            .lines()
            .skip(lines_before)
            .filter(|l| l.contains("not a Pod or a PodList"))
            .count();
        assert_eq!(
            reports, 1,
            "{body:?} is logged once, not at every poll\n{log}"
        );
        // Back to the good body: nothing changes, the problem goes.
        server.serve(200, &good);
        wait_until("the problem to clear", Duration::from_secs(30), || {
            (!a.http("/manifests")?.contains("not a Pod or a PodList")).then_some(())
        });
        assert_eq!(uid_of(&a, "kept").as_deref(), Some(uid.as_str()));
    }

    // The last body the gateway saw was refused; a boot without the server starts the cached pods.
    server.serve(200, bodies[0]);
    polls(&server, 1);
    server.stop();
    let mut offline = url_agent("portal-offline", &server, Some(&ca_file), "");
    std::fs::create_dir_all(offline.root.join("url-cache")).unwrap();
    for f in std::fs::read_dir(a.root.join("url-cache"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(f.path(), offline.root.join("url-cache").join(f.file_name())).unwrap();
    }
    drop(a);
    offline.start();
    offline.wait_running("kept", "main");
    assert_eq!(uid_of(&offline, "kept").as_deref(), Some(uid.as_str()));
    let _ = std::fs::remove_file(ca_file);
}
