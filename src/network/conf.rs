//! Finding the network configuration, as libcni's `ConfFiles` and the kubelet/containerd do:
//! the files of `cniConfDir` ending in `.conflist`, `.conf` or `.json`, in name order; the first
//! valid one is the pod network, invalid ones before it are skipped with a warning that names
//! them. When the directory holds no configuration at all, staticlet writes its default
//! network there (once), so a fresh gateway runs networked pods with nothing set up.

use super::NetworkError;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// The file the default network is written to.
pub const DEFAULT_FILE: &str = "10-staticlet.conflist";
/// The default network's name (and host-local's directory under /var/lib/cni/networks).
pub const DEFAULT_NAME: &str = "staticlet";
pub const DEFAULT_BRIDGE: &str = "staticlet0";
/// Marks a file staticlet wrote: it follows `podCIDR` until someone removes this key.
const GENERATED_KEY: &str = "staticlet.dev/default";
/// A configuration file larger than this is not one.
const MAX_FILE: u64 = 1024 * 1024;

/// A network configuration list: what every CNI call of a pod runs through.
#[derive(Debug, Clone, PartialEq)]
pub struct NetList {
    pub file: PathBuf,
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    /// Each plugin's configuration, as written (without `name`/`cniVersion`, added per call).
    pub plugins: Vec<Value>,
}

impl NetList {
    /// The plugin types, for messages (`bridge, portmap`).
    pub fn types(&self) -> Vec<String> {
        self.plugins.iter().map(plugin_type).collect()
    }

    /// Whether a plugin takes `capability` (`portMappings`) from the runtime.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.plugins
            .iter()
            .any(|p| p["capabilities"][capability] == Value::Bool(true))
    }

    /// The list as JSON, to persist with a pod's attachment (DEL must use what ADD used).
    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file, "name": self.name, "cniVersion": self.cni_version,
            "disableCheck": self.disable_check, "plugins": self.plugins,
        })
    }

    pub fn from_json(v: &Value) -> Option<NetList> {
        Some(NetList {
            file: PathBuf::from(v["file"].as_str()?),
            name: v["name"].as_str()?.to_string(),
            cni_version: v["cniVersion"].as_str()?.to_string(),
            disable_check: v["disableCheck"].as_bool().unwrap_or(false),
            plugins: v["plugins"].as_array()?.clone(),
        })
    }
}

pub fn plugin_type(p: &Value) -> String {
    p["type"].as_str().unwrap_or("").to_string()
}

/// Reads the network for new pods from `dir`, writing the default network (subnet
/// `pod_cidr`) first when the directory holds no configuration file.
pub fn load(dir: &Path, pod_cidr: &str) -> Result<NetList, NetworkError> {
    let files = config_files(dir);
    if files.is_empty() {
        return write_default(dir, pod_cidr);
    }
    let mut problems = Vec::new();
    for file in &files {
        match parse_file(file) {
            Ok(list) => {
                if file.file_name().is_some_and(|n| n == DEFAULT_FILE) {
                    if let Some(list) = refresh_default(file, &list, pod_cidr)? {
                        return Ok(list);
                    }
                }
                for p in &problems {
                    log::warn!("CNI configuration {p}; skipped, using {}", file.display());
                }
                return Ok(list);
            }
            Err(message) => problems.push(format!("{}: {message}", file.display())),
        }
    }
    Err(NetworkError::NoValidConfig {
        dir: dir.to_path_buf(),
        problems: problems.join("; "),
    })
}

/// The configuration files of `dir` in the order libcni reads them.
pub fn config_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "conflist" || x == "conf" || x == "json")
        })
        .collect();
    files.sort();
    files
}

/// Reads one file: a `.conflist` is a list, a `.conf`/`.json` one plugin made a list of one
/// (libcni's `ConfListFromConf`). The message says what is wrong and what to do.
pub fn parse_file(file: &Path) -> Result<NetList, String> {
    let meta = fs::metadata(file).map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Err(format!("not a regular file of at most {MAX_FILE} bytes"));
    }
    let bytes = fs::read(file).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let is_list = file.extension().is_some_and(|x| x == "conflist");
    let plugins = if is_list {
        v["plugins"]
            .as_array()
            .cloned()
            .ok_or("a .conflist needs a \"plugins\" list")?
    } else {
        if v.get("plugins").is_some() {
            return Err(
                "a single-plugin file with a \"plugins\" list: rename it to .conflist".into(),
            );
        }
        vec![v.clone()]
    };
    if plugins.is_empty() {
        return Err("\"plugins\" is empty".into());
    }
    for (i, p) in plugins.iter().enumerate() {
        let t = plugin_type(p);
        if t.is_empty() {
            return Err(format!("plugin {i} has no \"type\""));
        }
        // The type names an executable in cniBinDir, never a path elsewhere.
        if t.contains('/') || t == "." || t == ".." {
            return Err(format!("plugin type {t:?} is not a plain plugin name"));
        }
    }
    let name = v["name"].as_str().unwrap_or("").to_string();
    if name.is_empty() {
        return Err("no \"name\"".into());
    }
    let cni_version = v["cniVersion"].as_str().unwrap_or("").to_string();
    if cni_version.is_empty() {
        return Err("no \"cniVersion\"".into());
    }
    Ok(NetList {
        file: file.to_path_buf(),
        name,
        cni_version,
        disable_check: v["disableCheck"].as_bool().unwrap_or(false),
        plugins,
    })
}

/// A list from JSON already in memory (the default network, for `doctor`).
pub fn parse_file_value(v: &Value) -> Option<NetList> {
    Some(NetList {
        file: PathBuf::from(DEFAULT_FILE),
        name: v["name"].as_str()?.to_string(),
        cni_version: v["cniVersion"].as_str()?.to_string(),
        disable_check: false,
        plugins: v["plugins"].as_array()?.clone(),
    })
}

/// The documented default network: a bridge with host-local addresses on `pod_cidr`, NAT to
/// the outside (`ipMasq`), `hostPort` through portmap (reachable on 127.0.0.1 too: `snat`),
/// and loopback.
pub fn default_json(pod_cidr: &str) -> Value {
    let default_route = if pod_cidr.contains(':') {
        "::/0"
    } else {
        "0.0.0.0/0"
    };
    json!({
        "cniVersion": "1.0.0",
        "name": DEFAULT_NAME,
        GENERATED_KEY: true,
        "plugins": [
            {
                "type": "bridge",
                "bridge": DEFAULT_BRIDGE,
                "isGateway": true,
                // A new podCIDR moves the bridge's own address (as kubenet did for cbr0)
                // instead of failing every new pod on the old one.
                "forceAddress": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": default_route}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "loopback"}
        ]
    })
}

fn write_default(dir: &Path, pod_cidr: &str) -> Result<NetList, NetworkError> {
    let file = dir.join(DEFAULT_FILE);
    let io = |source| NetworkError::WriteDefault {
        file: file.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let body = serde_json::to_vec_pretty(&default_json(pod_cidr)).unwrap_or_default();
    crate::sys::fsutil::write_atomic(&file, &body).map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(&file, fs::Permissions::from_mode(0o644));
    log::info!(
        "no CNI configuration in {}: wrote the default network ({DEFAULT_BRIDGE}, {pod_cidr}) to {}",
        dir.display(),
        file.display()
    );
    parse_file(&file).map_err(|message| NetworkError::BadConfig { file, message })
}

/// A default file staticlet wrote for another `podCIDR` (or by another version) is written
/// again as the current default (new pods get the new subnet); a file without the marker is
/// the user's and stays.
fn refresh_default(
    file: &Path,
    list: &NetList,
    pod_cidr: &str,
) -> Result<Option<NetList>, NetworkError> {
    let raw: Value = fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if raw[GENERATED_KEY] != Value::Bool(true) || raw == default_json(pod_cidr) {
        return Ok(None);
    }
    let current = list
        .plugins
        .first()
        .map(|p| &p["ipam"]["ranges"][0][0]["subnet"]);
    log::info!(
        "{}: writing the default network again for podCIDR {pod_cidr} (it had {}); new pods get it",
        file.display(),
        current
            .and_then(Value::as_str)
            .unwrap_or("another configuration")
    );
    let dir = file.parent().unwrap_or(Path::new("/"));
    write_default(dir, pod_cidr).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("stl-cniconf-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_empty_directory_gets_the_default_network_once() {
        let d = dir("default");
        let list = load(&d.join("net.d"), "10.77.0.0/24").unwrap();
        assert_eq!(list.name, "staticlet");
        assert_eq!(list.types(), vec!["bridge", "portmap", "loopback"]);
        assert!(list.has_capability("portMappings"));
        let again = load(&d.join("net.d"), "10.77.0.0/24").unwrap();
        assert_eq!(list, again);
        // A new podCIDR rewrites staticlet's own file ...
        let moved = load(&d.join("net.d"), "10.78.0.0/24").unwrap();
        assert_eq!(
            moved.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.78.0.0/24"
        );
        // ... but not once the user took it over (removed the marker).
        let f = d.join("net.d").join(DEFAULT_FILE);
        let mut v: Value = serde_json::from_slice(&fs::read(&f).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove(GENERATED_KEY);
        fs::write(&f, v.to_string()).unwrap();
        let kept = load(&d.join("net.d"), "10.79.0.0/24").unwrap();
        assert_eq!(
            kept.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.78.0.0/24"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn broken_files_are_named_and_skipped_for_a_valid_one() {
        let d = dir("broken");
        fs::write(d.join("05-bad.conflist"), "{\"name\": ").unwrap();
        fs::write(
            d.join("06-notype.conf"),
            r#"{"cniVersion":"1.0.0","name":"x"}"#,
        )
        .unwrap();
        fs::write(d.join("README"), "not a config").unwrap();
        let e = load(&d, "10.77.0.0/24").unwrap_err().to_string();
        assert!(e.contains("05-bad.conflist: not valid JSON"), "{e}");
        assert!(
            e.contains("06-notype.conf: plugin 0 has no \"type\""),
            "{e}"
        );
        assert!(
            !d.join(DEFAULT_FILE).exists(),
            "a broken config is never replaced"
        );
        fs::write(
            d.join("07-mine.conf"),
            r#"{"cniVersion":"0.4.0","name":"mine","type":"ptp","ipam":{}}"#,
        )
        .unwrap();
        let list = load(&d, "10.77.0.0/24").unwrap();
        assert_eq!(
            (list.name.as_str(), list.cni_version.as_str()),
            ("mine", "0.4.0")
        );
        assert_eq!(list.types(), vec!["ptp"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_plugin_type_is_never_a_path() {
        let d = dir("path");
        let f = d.join("1.conflist");
        fs::write(
            &f,
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"../../bin/sh"}]}"#,
        )
        .unwrap();
        assert!(parse_file(&f)
            .unwrap_err()
            .contains("not a plain plugin name"));
        fs::remove_dir_all(&d).unwrap();
    }
}
