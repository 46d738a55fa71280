use super::*;
use crate::manifest::{self, ManifestError, Source};
use crate::source::Entry;

const NODE: &str = "n1";

fn pod(origin: &str, name: &str, cmd: &str) -> Entry {
    let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - {{name: c, image: busybox, command: [{cmd}]}}\n");
    let src = Source::File(origin.into());
    Entry {
        origin: origin.into(),
        result: Ok(manifest::load(yaml.as_bytes(), &src, NODE).unwrap()),
    }
}

fn bad(origin: &str) -> Entry {
    let src = Source::File(origin.into());
    let err: ManifestError = manifest::load(b"kind: Pod", &src, NODE).unwrap_err();
    Entry {
        origin: origin.into(),
        result: Err(err),
    }
}

fn snap(entries: Vec<Entry>) -> Snapshot {
    Snapshot {
        key: SourceKey::Dir("/m".into()),
        entries,
        complete: true,
        problem: None,
    }
}

fn set() -> DesiredSet {
    DesiredSet::new(vec![SourceKey::Dir("/m".into())])
}

#[test]
fn invalid_edit_keeps_the_last_good_pod() {
    let mut d = set();
    d.apply(snap(vec![pod("/m/a.yaml", "a", "sleep")]), "t1");
    let uid = d.desired().pods["default/a-n1"].uid().to_string();
    d.apply(snap(vec![bad("/m/a.yaml")]), "t2");
    let now = d.desired();
    assert_eq!(
        now.pods["default/a-n1"].uid(),
        uid,
        "the last good version stays"
    );
    assert_eq!(now.problems.len(), 1);
    assert_eq!(now.problems[0].pod.as_deref(), Some("default/a-n1"));
    assert!(now.problems[0].message.starts_with("/m/a.yaml: "));
    d.apply(snap(vec![pod("/m/a.yaml", "a", "'true'")]), "t3");
    let fixed = d.desired();
    assert_ne!(fixed.pods["default/a-n1"].uid(), uid);
    assert!(fixed.problems.is_empty());
}

#[test]
fn deleting_the_file_removes_the_pod_even_after_an_error() {
    let mut d = set();
    d.apply(snap(vec![pod("/m/a.yaml", "a", "sleep")]), "t1");
    d.apply(snap(vec![bad("/m/a.yaml")]), "t2");
    d.apply(snap(vec![]), "t3");
    assert!(d.desired().pods.is_empty());
    assert!(d.desired().problems.is_empty());
}

#[test]
fn a_new_invalid_file_starts_nothing() {
    let mut d = set();
    d.apply(snap(vec![bad("/m/a.yaml")]), "t1");
    assert!(d.desired().pods.is_empty());
    assert_eq!(d.desired().problems[0].pod, None);
}

#[test]
fn duplicates_keep_the_first_file_and_name_both() {
    let mut d = set();
    d.apply(
        snap(vec![
            pod("/m/a.yaml", "web", "sleep"),
            pod("/m/b.yaml", "web", "'true'"),
        ]),
        "t1",
    );
    let out = d.desired();
    assert_eq!(out.pods.len(), 1);
    assert_eq!(
        out.pods["default/web-n1"].source,
        Source::File("/m/a.yaml".into())
    );
    let msg = &out.problems[0].message;
    assert!(
        msg.contains("/m/a.yaml") && msg.contains("/m/b.yaml") && msg.contains("Duplicate"),
        "{msg}"
    );
}

#[test]
fn seen_is_stamped_once_per_uid() {
    let mut d = set();
    d.apply(snap(vec![pod("/m/a.yaml", "a", "sleep")]), "t1");
    d.apply(snap(vec![pod("/m/a.yaml", "a", "sleep")]), "t2");
    assert_eq!(d.desired().pods["default/a-n1"].seen(), Some("t1"));
    d.apply(snap(vec![pod("/m/a.yaml", "a", "'true'")]), "t3");
    assert_eq!(
        d.desired().pods["default/a-n1"].seen(),
        Some("t3"),
        "an edit is a new pod"
    );
}

#[test]
fn incomplete_until_every_source_reported_and_seeds_survive() {
    let mut d = DesiredSet::new(vec![
        SourceKey::Dir("/m".into()),
        SourceKey::Url("u".into()),
    ]);
    let Entry { result: Ok(p), .. } = pod("/m/a.yaml", "a", "sleep") else {
        unreachable!()
    };
    d.seed(SourceKey::Dir("/m".into()), "/m/a.yaml".into(), p);
    d.apply(
        Snapshot {
            key: SourceKey::Dir("/m".into()),
            entries: vec![bad("/m/a.yaml")],
            complete: true,
            problem: None,
        },
        "t",
    );
    let out = d.desired();
    assert!(!out.complete);
    assert!(
        out.pods.contains_key("default/a-n1"),
        "a seeded pod survives an invalid file at start-up"
    );
}

#[test]
fn a_source_problem_is_shown_and_keeps_the_pods() {
    let url = SourceKey::Url("https://x/pods".into());
    let mut d = DesiredSet::new(vec![url.clone()]);
    // Refused before anything was read: shown, nothing removed, still incomplete.
    let refused = |entries: Vec<Entry>, complete: bool, problem: Option<&str>| Snapshot {
        key: url.clone(),
        entries,
        complete,
        problem: problem.map(String::from),
    };
    d.apply(
        refused(vec![], false, Some("manifest URL https://x/pods: no")),
        "t",
    );
    let out = d.desired();
    assert!(!out.complete);
    assert_eq!(out.problems.len(), 1);
    assert!(out.problems[0].whole_source);
    assert_eq!(out.problems[0].origin, "https://x/pods");
    // A good body, then refused: the pods stay, the problem shows; then it clears.
    let good = vec![pod("https://x/pods#default/a", "a", "sleep")];
    d.apply(refused(good.clone(), true, None), "t");
    assert!(d.desired().problems.is_empty());
    d.apply(refused(good.clone(), true, Some("refused")), "t");
    let out = d.desired();
    assert!(out.pods.contains_key("default/a-n1"));
    assert_eq!(out.problems[0].message, "refused");
    d.apply(refused(good, true, None), "t");
    assert!(d.desired().problems.is_empty());
    assert!(d.desired().pods.contains_key("default/a-n1"));
}
