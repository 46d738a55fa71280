//! The "Pod fields" table of README.md against the fields the manifest parser accepts
//! (`staticlet::manifest::schema::field_rows`): every accepted field has exactly one row with a
//! known status, and every row names a field that exists. A field added to the parser without
//! a row fails here, so that no field is ever accepted and silently ignored.

use std::collections::BTreeMap;

const STATUSES: &[&str] = &[
    "honoured",
    "refused",
    "not for static pods",
    "no effect",
    "partly",
];

/// `field -> status` from the rows of the section, which ends at the next `## `.
fn table() -> BTreeMap<String, String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("\n## Pod fields\n")
        .expect("README.md has a \"## Pod fields\" section");
    let section = &readme[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut rows = BTreeMap::new();
    for line in section[..end].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let field = cells[1].trim_matches('`').to_string();
        assert!(
            rows.insert(field.clone(), cells[2].to_string()).is_none(),
            "two rows for {field}"
        );
    }
    rows
}

#[test]
fn every_accepted_field_has_a_row_and_every_row_a_field() {
    let rows = table();
    let fields = staticlet::manifest::schema::field_rows();
    let missing: Vec<&String> = fields.iter().filter(|f| !rows.contains_key(*f)).collect();
    assert!(
        missing.is_empty(),
        "fields without a row in README.md's Pod fields: {missing:?}"
    );
    let stale: Vec<&String> = rows.keys().filter(|r| !fields.contains(r)).collect();
    assert!(
        stale.is_empty(),
        "rows for fields the parser does not have: {stale:?}"
    );
    for (field, status) in &rows {
        assert!(
            STATUSES.contains(&status.as_str()),
            "{field}: status {status:?}"
        );
    }
}

/// The messages the table quotes for refused fields are the validator's: a manifest using
/// each is refused with that text.
#[test]
fn refusals_quoted_in_the_table_are_what_validation_says() {
    let cases = [
        ("  hostPID: true\n  shareProcessNamespace: true\n", "", "spec.securityContext.shareProcessNamespace", "Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled"),
        ("  activeDeadlineSeconds: 0\n", "", "spec.activeDeadlineSeconds", "Invalid value: 0: must be between 1 and 2147483647, inclusive"),
        ("", "    tty: true\n", "spec.containers[0].tty", "Unsupported value: true: tty is not supported by staticlet yet"),
        ("  volumes: [{name: d, downwardAPI: {items: [{path: /abs, fieldRef: {fieldPath: metadata.name}}]}}]\n", "", "spec.volumes[0].downwardAPI.items[0].path", "Invalid value: \"/abs\": must be a relative path"),
        ("  volumes: [{name: d, downwardAPI: {items: [{path: ip, fieldRef: {fieldPath: status.podIP}}]}}]\n", "", "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath", "Unsupported value: \"status.podIP\""),
        ("  volumes: [{name: d, downwardAPI: {items: [{path: c, resourceFieldRef: {resource: limits.cpu}}]}}]\n", "", "spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName", "Required value"),
        ("  volumes: [{name: d, emptyDir: {sizeLimit: 1Gi}}]\n", "", "spec.volumes[0].emptyDir.sizeLimit", "the kubelet never evicts a static pod (it is critical), so it would not be enforced"),
        ("  volumes: [{name: d, projected: {sources: [{downwardAPI: {items: [{path: x, mode: 01000, fieldRef: {fieldPath: metadata.uid}}]}}]}}]\n", "", "spec.volumes[0].projected.sources[0].downwardAPI.items[0].mode", "Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive"),
        ("  initContainers: [{name: s, image: busybox, readinessProbe: {exec: {command: [x]}}}]\n", "", "spec.initContainers[0].readinessProbe", "Forbidden: may not be set for init containers without restartPolicy=Always"),
        ("", "    env: [{name: X, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 2}}}]\n", "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor", "only divisor's values 1m and 1 are supported with the cpu resource"),
        ("  hostNetwork: true\n  securityContext: {sysctls: [{name: net.core.somaxconn, value: '1'}]}\n", "", "spec.securityContext.sysctls[0].name", "may not be specified when 'hostNetwork' is true"),
        ("  securityContext: {sysctls: [{name: kernel.hostname, value: x}]}\n", "", "spec.securityContext.sysctls[0].name", "not a namespaced sysctl"),
        ("  securityContext: {seccompProfile: {type: Localhost}}\n", "", "spec.securityContext.seccompProfile.localhostProfile", "Required value: must be set when seccomp type is Localhost"),
    ];
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (spec, container, field, message) in cases {
        let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{spec}  containers:\n  - name: c\n    image: busybox\n{container}");
        let source = staticlet::manifest::Source::File("/m/p.yaml".into());
        let err = staticlet::manifest::load(yaml.as_bytes(), &source, "n1").expect_err(field);
        assert!(
            err.errors
                .iter()
                .any(|e| e.field == field && e.message.contains(message)),
            "{field}: {message}\n  got: {err}"
        );
        let quoted = message.trim_start_matches("Unsupported value: ");
        assert!(
            readme.contains(quoted)
                || !message.contains("staticlet yet")
                || message.contains("{...}")
                || message.contains("30:"),
            "README.md does not quote {message:?}"
        );
    }
}
