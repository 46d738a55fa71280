//! The attachment's bookkeeping with fake plugins (shell scripts that log their calls): fast,
//! no root needed. The real plugins are exercised end to end in tests/network.rs.

use super::*;
use crate::manifest::{self, Source};
use std::fs;
use std::path::PathBuf;

struct Fixture {
    dir: PathBuf,
    cfg: NetworkConfig,
    pod_dir: PathBuf,
}

const PLUGIN: &str = r#"#!/bin/sh
here=$(dirname "$0"); kind=$(basename "$0")
in=$(cat)
echo "$CNI_COMMAND $kind $CNI_CONTAINERID netns=$CNI_NETNS args=$CNI_ARGS $in" >> "$here/calls.log"
[ -e "$here/fail-$CNI_COMMAND-$kind" ] && { echo '{"code":11,"msg":"no IP addresses available in range set"}'; exit 1; }
[ "$CNI_COMMAND" = ADD ] || exit 0
case $kind in
fake) ip=10.99.0.7 ;;
*) ip=10.99.0.8 ;;
esac
echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}],"ips":[{"interface":0,"address":"'$ip'/24"}]}'
"#;

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("stl-attach-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (bin, conf, pod_dir) = (dir.join("bin"), dir.join("net.d"), dir.join("pods/u1"));
        for d in [&bin, &conf, &pod_dir] {
            fs::create_dir_all(d).unwrap();
        }
        for kind in ["fake", "chained"] {
            let p = bin.join(kind);
            fs::write(&p, PLUGIN).unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(
            conf.join("10-t.conflist"),
            r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"fake"},{"type":"chained","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        let cfg = NetworkConfig {
            cni_conf_dir: conf,
            cni_bin_dirs: vec![dir.join("nowhere"), bin],
            ..Default::default()
        };
        Fixture { dir, cfg, pod_dir }
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("bin/calls.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// `ADD fake`, `DEL chained`, ...: the command and plugin of each call.
    fn steps(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn pod(ports: &str) -> StaticPod {
    let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns}}\nspec:\n  containers:\n  - name: a\n    image: busybox\n{ports}");
    manifest::load(yaml.as_bytes(), &Source::File("/m/p.yaml".into()), "n").unwrap()
}

const NETNS: &str = "/proc/self/ns/net";

#[test]
fn add_runs_the_chain_in_order_and_adoption_only_checks() {
    let f = Fixture::new("add");
    let p = pod("");
    let ips = attach(&p, &f.pod_dir, Path::new(NETNS), &f.cfg).unwrap();
    assert_eq!(
        ips,
        vec!["10.99.0.8".parse::<IpAddr>().unwrap()],
        "the last plugin's result"
    );
    assert_eq!(f.steps(), vec!["ADD fake", "ADD chained"]);
    let calls = f.calls();
    assert!(calls[0].contains(&format!("netns={NETNS}")), "{}", calls[0]);
    assert!(
        calls[0].contains("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p-n;"),
        "{}",
        calls[0]
    );
    assert!(
        calls[1].contains("\"prevResult\"") && calls[1].contains("10.99.0.7"),
        "{}",
        calls[1]
    );
    // An agent restart: the attachment is adopted (CHECK), never added again.
    let again = attach(&p, &f.pod_dir, Path::new(NETNS), &f.cfg).unwrap();
    assert_eq!(again, ips);
    assert_eq!(f.steps()[2..], ["CHECK fake", "CHECK chained"]);
}

#[test]
fn an_interrupted_add_is_released_before_the_next_one() {
    let f = Fixture::new("interrupted");
    let p = pod("");
    attach(&p, &f.pod_dir, Path::new(NETNS), &f.cfg).unwrap();
    // The agent died between ADD and writing its result.
    let mut rec = record::load(&f.pod_dir).unwrap().unwrap();
    rec.state = State::Adding;
    record::save(&f.pod_dir, &rec).unwrap();
    attach(&p, &f.pod_dir, Path::new(NETNS), &f.cfg).unwrap();
    assert_eq!(
        f.steps()[2..],
        ["DEL chained", "DEL fake", "ADD fake", "ADD chained"]
    );
}

#[test]
fn a_failed_add_is_undone_and_named() {
    let f = Fixture::new("failed");
    fs::write(f.dir.join("bin/fail-ADD-chained"), "").unwrap();
    let e = attach(&pod(""), &f.pod_dir, Path::new(NETNS), &f.cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("network \"t\""), "{e}");
    assert!(e.contains("10-t.conflist"), "{e}");
    assert!(
        e.contains("plugin type=\"chained\" failed (add): no IP addresses available"),
        "{e}"
    );
    assert_eq!(
        f.steps(),
        vec!["ADD fake", "ADD chained", "DEL chained", "DEL fake"]
    );
    assert!(record::load(&f.pod_dir).unwrap().is_none());
}

#[test]
fn release_uses_what_add_used_and_keeps_the_record_until_del_succeeds() {
    let f = Fixture::new("release");
    let p = pod("");
    attach(&p, &f.pod_dir, Path::new(NETNS), &f.cfg).unwrap();
    // The configuration changed since: DEL still runs through the network ADD used.
    fs::remove_file(f.cfg.cni_conf_dir.join("10-t.conflist")).unwrap();
    fs::write(f.dir.join("bin/fail-DEL-fake"), "").unwrap();
    let e = release(&f.pod_dir).unwrap_err().to_string();
    assert!(e.contains("plugin type=\"fake\" failed (del)"), "{e}");
    assert!(
        record::load(&f.pod_dir).unwrap().is_some(),
        "kept for a retry"
    );
    fs::remove_file(f.dir.join("bin/fail-DEL-fake")).unwrap();
    release(&f.pod_dir).unwrap();
    assert!(record::load(&f.pod_dir).unwrap().is_none());
    let calls = f.calls();
    let del = calls
        .iter()
        .rev()
        .find(|l| l.starts_with("DEL chained"))
        .unwrap();
    assert!(
        del.contains("\"name\":\"t\"") && del.contains("\"prevResult\""),
        "{del}"
    );
    assert_eq!(f.steps().iter().filter(|s| s.starts_with("ADD")).count(), 2);
    // Nothing recorded: nothing to do.
    release(&f.pod_dir).unwrap();
}

#[test]
fn a_gone_namespace_is_released_with_an_empty_netns() {
    let f = Fixture::new("gone");
    let p = pod("");
    let ns = f.dir.join("ns-net");
    fs::write(&ns, "").unwrap();
    // A plain file where the pinned namespace was: what a power cut leaves.
    let mut rec = Record {
        state: State::Ready,
        container_id: p.uid().into(),
        if_name: IF_NAME.into(),
        netns: ns.clone(),
        cni_path: f.cfg.cni_bin_dirs.clone(),
        cni_args: String::new(),
        network: conf::load(&f.cfg.cni_conf_dir, "10.77.0.0/24")
            .unwrap()
            .to_json(),
        capability_args: json!({}),
        result: Some(json!({"ips": []})),
    };
    record::save(&f.pod_dir, &rec).unwrap();
    attach(&p, &f.pod_dir, Path::new(NETNS), &f.cfg).unwrap();
    let calls = f.calls();
    assert!(
        calls[0].starts_with("DEL chained") && calls[0].contains("netns= "),
        "{}",
        calls[0]
    );
    assert_eq!(f.steps()[2..], ["ADD fake", "ADD chained"]);
    rec.netns = NETNS.into();
    assert_eq!(
        record::load(&f.pod_dir).unwrap().unwrap().netns,
        PathBuf::from(NETNS)
    );
}

#[test]
fn host_ports_need_a_plugin_that_maps_them() {
    let f = Fixture::new("ports");
    fs::write(
        f.cfg.cni_conf_dir.join("10-t.conflist"),
        r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"fake"}]}"#,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = pod(&format!(
        "    ports: [{{containerPort: 80, hostPort: {port}, hostIP: 127.0.0.1}}]\n"
    ));
    let e = attach(&p, &f.pod_dir, Path::new(NETNS), &f.cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("hostPort {port}")) && e.contains("portmap"),
        "{e}"
    );
    assert!(f.calls().is_empty(), "nothing was added");
    assert!(hostport::held_by(p.uid()).is_empty(), "the port was let go");
}
