//! A real agent with a pod network of its own, for the networking tests: a bridge named after
//! the test process (at most 15 characters), a /24 of 10.213.0.0/16 nothing else here uses,
//! a conf dir, and host-local's store in the test's directory. The plugins (Debian's
//! containernetworking-plugins) are called through logging wrappers, so tests can count
//! ADDs. Everything is removed even when a test fails: the attachments (drain), the rules
//! naming the network, the bridge.

use super::*;

pub const PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "loopback"];

/// An agent with a network of its own.
pub struct Net {
    pub agent: Agent,
    pub bridge: String,
    /// `10.213.N`: the /24 is `{prefix}.0/24`, the gateway `{prefix}.1`.
    pub prefix: String,
    pub ipam: PathBuf,
}

pub fn require_plugins() {
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
    pub fn new(tag: &str, prefix_len: u8, plugins: Option<&str>) -> Net {
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

    pub fn gateway(&self) -> String {
        format!("{}.1", self.prefix)
    }

    pub fn calls(&self, what: &str) -> usize {
        fs::read_to_string(self.agent.base.join("cni-calls.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(what))
            .count()
    }

    pub fn pod_ip(&self, pod: &str) -> String {
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
    pub fn reserved(&self) -> Vec<String> {
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
    pub fn veths(&self) -> Vec<String> {
        fs::read_dir(format!("/sys/class/net/{}/brif", self.bridge))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    }

    /// The NAT rules the plugins made for this network (their comments name it).
    pub fn rules(&self) -> Vec<String> {
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

    pub fn logs(&self, pod: &str) -> String {
        self.agent.cli(&["logs", pod]).1
    }

    pub fn wait_log(&self, pod: &str, needle: &str) -> String {
        wait_until(
            &format!("{needle:?} in {pod}'s log\n{}", self.agent.agent_log()),
            Duration::from_secs(60),
            || Some(self.logs(pod)).filter(|l| l.contains(needle)),
        )
    }

    pub fn waiting_message(&self, pod: &str) -> String {
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
        let name = format!("name: \\\"{}\\\"", self.bridge);
        remove_nat_rules(|rule| rule.contains(&name));
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Deletes the nat rules `pick` chooses, and the per-pod chains they are in or jump to (never
/// the plugins' shared ones): what a network's plugins leave when DEL could not see a pod's
/// namespace any more.
pub fn remove_nat_rules(pick: impl Fn(&str) -> bool) {
    let out = match Command::new("iptables-save").args(["-t", "nat"]).output() {
        Ok(o) => o,
        Err(_) => return,
    };
    let mut chains = Vec::new();
    for rule in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A") && pick(l))
    {
        let args: Vec<String> = shell_words(&rule.replacen("-A", "-D", 1));
        for w in args.windows(2).filter(|w| w[0] == "-D" || w[0] == "-j") {
            if w[1].starts_with("CNI-") && !w[1].starts_with("CNI-HOSTPORT-") {
                chains.push(w[1].clone());
            }
        }
        let _ = Command::new("iptables")
            .args(["-t", "nat"])
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

pub fn get(url: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    agent.get(url).call().ok()?.body_mut().read_to_string().ok()
}

pub fn get_eventually(url: &str) -> String {
    wait_until(&format!("GET {url}"), Duration::from_secs(30), || get(url))
}

/// busybox httpd bound to the pod IP alone (so only a probe to the pod IP succeeds), with a
/// hostPort, a readiness probe, and the pod's view of its network on stdout.
pub fn web_yaml(host_port: u16) -> String {
    pod_yaml(
        "web",
        "  hostAliases:\n  - {ip: 10.1.2.3, hostnames: [alias.example]}\n",
        &format!(
            "    env:\n    - name: POD_IP\n      valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}\n    ports:\n    - {{containerPort: 80, hostPort: {host_port}}}\n    readinessProbe:\n      httpGet: {{path: /, port: 80}}\n      periodSeconds: 1\n"
        ),
        r#"["sh", "-c", "echo ip=$POD_IP; cat /etc/hosts /etc/resolv.conf; exec httpd -f -p $POD_IP:80 -h /www"]"#,
    )
}
