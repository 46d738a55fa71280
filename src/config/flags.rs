//! Values given as text on the command line or in the configuration file, in the kubelet's
//! syntax: the status address, URL headers and node labels. Each error says what the
//! value should look like; the caller adds the flag or field it came from.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// `host:port`, or `none` to turn the status endpoint off.
pub fn parse_status_address(text: &str) -> Result<Option<SocketAddr>, String> {
    if text == "none" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:10255, or none"))
}

/// Parses kubelet-style `--manifest-url-header 'a:x,b:y'` into the header map.
pub fn parse_header_flag(
    text: &str,
    into: &mut BTreeMap<String, Vec<String>>,
) -> Result<(), String> {
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once(':')
            .ok_or_else(|| format!("{pair:?} is not name:value"))?;
        into.entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    Ok(())
}

/// Parses `--node-labels a=b,c=d`.
pub fn parse_labels_flag(text: &str, into: &mut BTreeMap<String, String>) -> Result<(), String> {
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        into.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(())
}

/// `--node-ip` / `nodeIP`: one IP address (the Node's InternalIP and the pods' hostIP).
pub fn parse_node_ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IP address such as 192.168.1.10"))
}
