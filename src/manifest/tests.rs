use super::*;
use std::path::PathBuf;

const NODE: &str = "node1";

fn file(p: &str) -> Source {
    Source::File(PathBuf::from(p))
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: httpd
    image: busybox
    command: [httpd, -f]
"#;

#[test]
fn defaults_are_applied() {
    let sp = load(WEB.as_bytes(), &file("/m/web.yaml"), NODE).unwrap();
    assert_eq!(sp.name(), "web-node1");
    assert_eq!(sp.namespace(), "default");
    assert_eq!(sp.full_name(), "default/web-node1");
    assert_eq!(sp.pod.spec.node_name.as_deref(), Some("node1"));
    assert_eq!(sp.uid().len(), 32);
    let ann = &sp.pod.metadata.annotations;
    assert_eq!(ann[ANN_HASH], sp.uid());
    assert_eq!(ann[ANN_SOURCE], "file");
    assert_eq!(
        sp.raw["spec"]["tolerations"],
        json!([{"operator": "Exists", "effect": "NoExecute"}])
    );
    assert_eq!(sp.raw["metadata"]["labels"]["app"], "web");
}

#[test]
fn url_pods_get_no_toleration_and_http_source() {
    let v = decode(WEB.as_bytes()).unwrap();
    let sp = build(v, &Source::Url("https://x/pods".into()), NODE).unwrap();
    assert_eq!(sp.pod.metadata.annotations[ANN_SOURCE], "http");
    assert!(sp.raw["spec"].get("tolerations").is_none());
}

#[test]
fn hash_ignores_formatting_but_not_content() {
    let a = load(WEB.as_bytes(), &file("/m/web.yaml"), NODE).unwrap();
    let reformatted =
        "# a comment\n".to_string() + &WEB.replace("labels: {app: web}", "labels:\n    app: web");
    let b = load(reformatted.as_bytes(), &file("/m/web.yaml"), NODE).unwrap();
    assert_eq!(a.uid(), b.uid());
    let json = serde_json::to_string(&decode(WEB.as_bytes()).unwrap()).unwrap();
    let c = load(json.as_bytes(), &file("/m/web.yaml"), NODE).unwrap();
    assert_eq!(a.uid(), c.uid(), "JSON and YAML of the same pod hash alike");
    let edited = load(
        WEB.replace("-f]", "-f, -p, '8080']").as_bytes(),
        &file("/m/web.yaml"),
        NODE,
    )
    .unwrap();
    assert_ne!(a.uid(), edited.uid());
    let moved = load(WEB.as_bytes(), &file("/m/other.yaml"), NODE).unwrap();
    assert_ne!(a.uid(), moved.uid(), "the source is part of the UID");
    let other_node = load(WEB.as_bytes(), &file("/m/web.yaml"), "node2").unwrap();
    assert_ne!(a.uid(), other_node.uid());
}

#[test]
fn url_uid_does_not_depend_on_node() {
    let src = Source::Url("https://x/pods".into());
    let a = build(decode(WEB.as_bytes()).unwrap(), &src, "a").unwrap();
    let b = build(decode(WEB.as_bytes()).unwrap(), &src, "b").unwrap();
    assert_eq!(a.uid(), b.uid());
}

#[test]
fn seen_is_not_part_of_the_hash() {
    let mut a = load(WEB.as_bytes(), &file("/m/web.yaml"), NODE).unwrap();
    let uid = a.uid().to_string();
    a.set_seen("2026-01-01T00:00:00Z");
    assert_eq!(a.uid(), uid);
    assert_eq!(a.seen(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(
        a.raw["metadata"]["annotations"][ANN_SEEN],
        "2026-01-01T00:00:00Z"
    );
}

fn errors_of(yaml: &str) -> Vec<FieldError> {
    load(yaml.as_bytes(), &file("/m/x.yaml"), NODE)
        .unwrap_err()
        .errors
}

#[test]
fn static_pod_restrictions_name_the_field() {
    let yaml = WEB.to_string()
        + "  serviceAccountName: robot\n  volumes:\n  - name: a\n    hostPath: {path: /tmp}\n  - name: s\n    secret: {secretName: x}\n";
    let errs = errors_of(&yaml);
    let find = |f: &str| {
        errs.iter()
            .find(|e| e.field == f)
            .map(|e| e.message.clone())
    };
    assert!(find("spec.volumes[1].secret")
        .unwrap()
        .contains("static pods may not reference secrets"));
    assert!(find("spec.serviceAccountName")
        .unwrap()
        .contains("service accounts"));
}

#[test]
fn error_display_names_file_and_field() {
    let err = load(
        WEB.replace("name: httpd", "name: HTTPD").as_bytes(),
        &file("/m/x.yaml"),
        NODE,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/m/x.yaml: spec.containers[0].name: Invalid value: \"HTTPD\": must be a DNS-1123 label"
    );
}

#[test]
fn type_errors_carry_the_path() {
    let errs = errors_of(&WEB.replace(
        "command: [httpd, -f]",
        "command: [httpd, -f]\n    ports: [{containerPort: eighty}]",
    ));
    assert_eq!(errs[0].field, "spec.containers[0].ports[0].containerPort");
    assert!(
        errs[0].message.contains("invalid type"),
        "{}",
        errs[0].message
    );
}

#[test]
fn pod_lists_split_into_items() {
    let list = json!({"apiVersion": "v1", "kind": "PodList", "items": [{"a": 1}, {"b": 2}]});
    assert_eq!(split_pod_list(list).unwrap().len(), 2);
    assert!(split_pod_list(json!({"kind": "PodList", "items": []}))
        .unwrap()
        .is_empty());
    assert_eq!(split_pod_list(json!({"kind": "Pod"})).unwrap().len(), 1);
}

#[test]
fn oversized_and_multi_document_files_are_refused() {
    let big = vec![b'#'; MAX_MANIFEST_BYTES + 1];
    assert!(decode(&big)
        .unwrap_err()
        .message
        .contains("larger than 10 MB"));
    let two = format!("{WEB}---\n{WEB}");
    assert!(decode(two.as_bytes())
        .unwrap_err()
        .message
        .contains("more than one document"));
    assert!(decode(b"").unwrap_err().message.contains("cannot parse"));
}
