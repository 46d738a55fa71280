//! Reading a CNI result: the pod's addresses. Results of spec versions 0.3.0 and later list
//! `ips` that point (by index) at the `interfaces` they belong to; the pod IPs are those of
//! the interface the runtime asked for (`eth0`) in the pod's namespace, as containerd's
//! go-cni picks them. Versions 0.1.0 and 0.2.0 have `ip4`/`ip6` instead.

use serde_json::Value;
use std::net::IpAddr;

/// The pod's addresses in a result, IPv4 first (the kubelet's `podIP` is the first).
pub fn pod_ips(result: &Value, if_name: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(list) = result["ips"].as_array() {
        let interfaces = result["interfaces"].as_array();
        let on_pod_interface = |ip: &Value| -> bool {
            let Some(i) = ip["interface"].as_u64() else {
                return true; // no interface given: the address is the container's
            };
            interfaces
                .and_then(|all| all.get(i as usize))
                .is_some_and(|itf| {
                    itf["name"].as_str() == Some(if_name)
                        && itf["sandbox"].as_str().is_some_and(|s| !s.is_empty())
                })
        };
        let mut chosen: Vec<&Value> = list.iter().filter(|ip| on_pod_interface(ip)).collect();
        if chosen.is_empty() {
            chosen = list.iter().collect();
        }
        ips.extend(chosen.into_iter().filter_map(|ip| address(&ip["address"])));
    } else {
        ips.extend(
            ["ip4", "ip6"]
                .iter()
                .filter_map(|k| address(&result[*k]["ip"])),
        );
    }
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips.dedup();
    ips
}

/// `10.77.0.2/24` -> 10.77.0.2.
fn address(v: &Value) -> Option<IpAddr> {
    let text = v.as_str()?;
    text.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_addresses_of_the_pod_interface_are_taken() {
        // What the bridge plugin answers: the bridge, the host's veth, the pod's eth0.
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "staticlet0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/ns"}],
            "ips": [{"interface": 2, "address": "fd00::5/64"}, {"interface": 2, "address": "10.77.0.5/24", "gateway": "10.77.0.1"},
                    {"interface": 0, "address": "10.77.0.1/24"}],
        });
        let ips = pod_ips(&r, "eth0");
        assert_eq!(
            ips,
            vec![
                "10.77.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn old_and_unindexed_results_are_read() {
        let r = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.9/16"}});
        assert_eq!(
            pod_ips(&r, "eth0"),
            vec!["10.1.0.9".parse::<IpAddr>().unwrap()]
        );
        let r = json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.2.0.3/24"}]});
        assert_eq!(
            pod_ips(&r, "eth0"),
            vec!["10.2.0.3".parse::<IpAddr>().unwrap()]
        );
        assert!(pod_ips(&json!({"cniVersion": "1.0.0"}), "eth0").is_empty());
        assert!(pod_ips(&json!("garbage"), "eth0").is_empty());
    }
}
