//! The node's own address (`status.hostIP`, the Node's InternalIP): the IPv4 address of the
//! interface that holds the default route, as the kubelet chooses it (`ChooseHostInterface`);
//! else the first non-loopback IPv4 address. Going by the route keeps pod bridges (which come
//! and go, and may come up before the uplink has its address) out of the choice.

use std::net::Ipv4Addr;

/// The node's IPv4 address as text, or 127.0.0.1 when it has none.
pub fn host_ip() -> String {
    if let Some(ip) = crate::config::node_ip() {
        return ip.to_string();
    }
    let addrs = interface_addrs();
    let preferred = default_route_interface();
    preferred
        .and_then(|name| addrs.iter().find(|(n, _)| *n == name))
        .or_else(|| addrs.first())
        .map(|(_, ip)| ip.to_string())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// The interface of the IPv4 default route with the lowest metric (`/proc/net/route`).
fn default_route_interface() -> Option<String> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let (iface, dest, metric, mask) = (f.first()?, f.get(1)?, f.get(6)?, f.get(7)?);
            (*dest == "00000000" && *mask == "00000000")
                .then(|| (metric.parse::<u64>().unwrap_or(u64::MAX), iface.to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Every up, non-loopback interface with an IPv4 address, in the kernel's order.
fn interface_addrs() -> Vec<(String, Ipv4Addr)> {
    let mut out = Vec::new();
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free below; every pointer
    // is checked for null before use.
    unsafe {
        if libc::getifaddrs(&mut addrs) != 0 {
            return out;
        }
        let mut cur = addrs;
        while !cur.is_null() {
            let a = &*cur;
            if !a.ifa_addr.is_null()
                && !a.ifa_name.is_null()
                && (*a.ifa_addr).sa_family as i32 == libc::AF_INET
                && a.ifa_flags & libc::IFF_LOOPBACK as u32 == 0
                && a.ifa_flags & libc::IFF_UP as u32 != 0
            {
                let sin = &*(a.ifa_addr as *const libc::sockaddr_in);
                let name = std::ffi::CStr::from_ptr(a.ifa_name)
                    .to_string_lossy()
                    .to_string();
                out.push((name, Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            }
            cur = a.ifa_next;
        }
        libc::freeifaddrs(addrs);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_address_is_an_address() {
        let ip = super::host_ip();
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    }
}
