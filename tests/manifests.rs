//! The manifest corpus: every file under tests/manifests/invalid must be refused with the
//! expected field and message (and the file named); every file under valid/ must load.

use staticlet::manifest::{self, Source};
use std::fs;
use std::path::{Path, PathBuf};

const NODE: &str = "node1";

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

/// The `# expect-field:` and `# expect-message:` lines, from the file or its `.expect` sidecar.
fn expectation(path: &Path) -> (String, String) {
    let sidecar = PathBuf::from(format!("{}.expect", path.display()));
    let bytes = fs::read(if sidecar.exists() { &sidecar } else { path }).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let get = |key: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("# {key}:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{}: no '# {key}:' line", path.display()))
    };
    (get("expect-field"), get("expect-message"))
}

#[test]
fn every_invalid_manifest_is_refused_with_the_expected_error() {
    let files = corpus("invalid");
    assert!(files.len() >= 30, "the corpus has {} files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let (field, message) = expectation(path);
        let bytes = fs::read(path).unwrap();
        match manifest::load(&bytes, &Source::File(path.clone()), NODE) {
            Ok(_) => failures.push(format!(
                "{}: accepted, expected {field}: {message}",
                path.display()
            )),
            Err(err) => {
                let text = err.to_string();
                let hit = err.errors.iter().any(|e| {
                    e.field == field && e.message.to_lowercase().contains(&message.to_lowercase())
                });
                if !hit || !text.contains(&path.display().to_string()) {
                    failures.push(format!(
                        "{}: expected {field}: {message}\n  got: {text}",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn every_valid_manifest_loads() {
    let files = corpus("valid");
    assert!(files.len() >= 10);
    for path in &files {
        let bytes = fs::read(path).unwrap();
        if let Err(e) = manifest::load(&bytes, &Source::File(path.clone()), NODE) {
            panic!("{e}");
        }
    }
}

#[test]
fn valid_manifests_have_no_unknown_fields() {
    // Fields staticlet ignores (dnsPolicy, nodeSelector, status, ...) are Kubernetes fields,
    // not unknown ones: `validate --strict` must accept every valid manifest.
    for path in &corpus("valid") {
        let bytes = fs::read(path).unwrap();
        let (result, unknown) = manifest::load_checked(&bytes, &Source::File(path.clone()), NODE);
        assert!(result.is_ok(), "{}", path.display());
        assert!(unknown.is_empty(), "{}: {unknown:?}", path.display());
    }
}

/// Real public manifests (kubeadm, the Kubernetes documentation, HA load balancers, edge
/// workloads; sources in tests/manifests/README.md): each validates with no unknown field, or,
/// when it starts with `# expect-field:`, is refused naming that field.
#[test]
fn public_manifests_validate_or_are_refused_by_name() {
    let files = corpus("public");
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let bytes = fs::read(path).unwrap();
        let refused = String::from_utf8_lossy(&bytes).starts_with("# expect-field:");
        let (result, unknown) = manifest::load_checked(&bytes, &Source::File(path.clone()), NODE);
        match (result, refused) {
            (Ok(_), false) if unknown.is_empty() => {}
            (Ok(_), false) => {
                failures.push(format!("{}: unknown fields {unknown:?}", path.display()))
            }
            (Err(e), false) => failures.push(format!("{e}")),
            (Ok(_), true) => {
                failures.push(format!("{}: accepted, expected a refusal", path.display()))
            }
            (Err(err), true) => {
                let (field, message) = expectation(path);
                let hit = err
                    .errors
                    .iter()
                    .any(|e| e.field == field && e.message.contains(&message));
                if !hit {
                    failures.push(format!(
                        "{}: expected {field}: {message}\n  got: {err}",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
