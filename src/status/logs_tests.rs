use super::*;
use serde_json::json;
use std::io::Cursor;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

#[test]
fn query_reads_booleans_and_numbers_as_the_api_server_does() {
    let q = parse_query(
        "follow=true&previous=0&timestamps&tailLines=10&limitBytes=5",
        now(),
    )
    .unwrap();
    assert!(q.follow && !q.previous && q.timestamps);
    assert_eq!((q.tail_lines, q.limit_bytes), (Some(10), Some(5)));
    assert!(!parse_query("follow=False", now()).unwrap().follow);
    let q = parse_query("sinceSeconds=60", now()).unwrap();
    assert_eq!(q.since, Some(now() - Duration::from_secs(60)));
    let q = parse_query("sinceTime=2023-11-14T22%3A13%3A20Z", now()).unwrap();
    assert_eq!(q.since, Some(now()));
    for bad in [
        "tailLines=-1",
        "tailLines=x",
        "limitBytes=0",
        "sinceSeconds=0",
        "sinceTime=yesterday",
        "sinceSeconds=5&sinceTime=2023-11-14T22:13:20Z",
    ] {
        let e = parse_query(bad, now()).unwrap_err();
        assert_eq!(e.status, 400, "{bad}");
    }
    assert!(parse_query("tailLines=x", now())
        .unwrap_err()
        .message
        .contains("tailLines"));
}

fn shared(state: Value, log: bool) -> Shared {
    use crate::status::pod::{ContainerState, ContainerStatus, Phase, PodStatus, Status};
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec:\n  containers:\n  - {name: c, image: busybox}\n";
    let source = crate::manifest::Source::File("/m/p.yaml".into());
    let pod = crate::manifest::load(yaml.as_bytes(), &source, "n").unwrap();
    let state = match state.get("waiting") {
        Some(w) => ContainerState::Waiting {
            reason: w["reason"].as_str().unwrap_or("").into(),
            message: None,
        },
        None => ContainerState::Running {
            started_at: String::new(),
        },
    };
    let status = Status {
        phase: Phase::Pending,
        reason: None,
        message: None,
        conditions: Vec::new(),
        host_ip: String::new(),
        pod_ip: String::new(),
        pod_ips: Vec::new(),
        start_time: String::new(),
        qos_class: "BestEffort",
        container_statuses: vec![ContainerStatus {
            name: "c".into(),
            image: "busybox".into(),
            image_id: String::new(),
            ready: false,
            started: false,
            restart_count: 0,
            state,
            container_id: None,
            last_state: None,
        }],
        init_container_statuses: Vec::new(),
    };
    Shared {
        pods: vec![PodStatus {
            pod: std::sync::Arc::new(pod),
            deletion_timestamp: None,
            status,
        }],
        log_paths: if log {
            vec![LogPaths {
                namespace: "default".into(),
                pod: "p-n".into(),
                container: "c".into(),
                current: "/l/1.log".into(),
                previous: Some("/l/0.log".into()),
                running: true,
            }]
        } else {
            vec![]
        },
        ..Shared::default()
    }
}

#[test]
fn a_waiting_container_says_why_in_the_kubelets_words() {
    let q = LogQuery::default();
    let s = shared(json!({"waiting": {"reason": "ErrImageNeverPull"}}), false);
    let e = find(&s, "default", "p-n", "c", &q).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (
            400,
            "container \"c\" in pod \"p-n\" is waiting to start: ErrImageNeverPull"
        )
    );
    let s = shared(json!({"waiting": {"reason": "ImagePullBackOff"}}), false);
    assert!(find(&s, "default", "p-n", "c", &q)
        .unwrap_err()
        .message
        .ends_with("trying and failing to pull image"));
    let s = shared(json!({"waiting": {"reason": "ContainerCreating"}}), false);
    let e = find(&s, "default", "p-n", "x", &q).unwrap_err();
    assert_eq!(e.status, 404);
    assert_eq!(e.message, "container \"x\" not found in pod \"p-n\"");
    let e = find(&s, "kube-system", "p-n", "c", &q).unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (404, "pod \"p-n\" does not exist")
    );
    let e = find(
        &s,
        "default",
        "p-n",
        "c",
        &LogQuery {
            previous: true,
            ..q
        },
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(
        e.message.starts_with("previous terminated container"),
        "{}",
        e.message
    );
}

#[test]
fn a_container_with_logs_is_served_and_followed_while_running() {
    let s = shared(json!({"running": {}}), true);
    let follow = LogQuery {
        follow: true,
        ..LogQuery::default()
    };
    let t = find(&s, "default", "p-n", "c", &follow).unwrap();
    assert_eq!(t.file, PathBuf::from("/l/1.log"));
    assert!(t.follow.is_some());
    let prev = LogQuery {
        previous: true,
        ..follow
    };
    let t = find(&s, "default", "p-n", "c", &prev).unwrap();
    assert_eq!(t.file, PathBuf::from("/l/0.log"));
    assert!(t.follow.is_none());
}

const LOG: &str = "2023-11-14T22:13:19.000000000Z stdout F one\n\
                   2023-11-14T22:13:20.000000000Z stderr P tw\n\
                   2023-11-14T22:13:20.500000000Z stderr F o\n\
                   2023-11-14T22:13:21.000000000Z stdout F three\n";

fn convert(q: &LogQuery) -> String {
    let mut c = Convert::new(q);
    let mut out = Vec::new();
    for line in LOG.lines() {
        c.record(line.as_bytes(), &mut out);
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn records_become_output_with_timestamps_since_and_limit() {
    assert_eq!(convert(&LogQuery::default()), "one\ntwo\nthree\n");
    assert_eq!(
        convert(&LogQuery {
            timestamps: true,
            ..LogQuery::default()
        }),
        "2023-11-14T22:13:19.000000000Z one\n2023-11-14T22:13:20.000000000Z two\n\
         2023-11-14T22:13:21.000000000Z three\n"
    );
    assert_eq!(
        convert(&LogQuery {
            since: Some(now()),
            ..LogQuery::default()
        }),
        "two\nthree\n"
    );
    let mut c = Convert::new(&LogQuery {
        limit_bytes: Some(6),
        ..LogQuery::default()
    });
    let mut out = Vec::new();
    for line in LOG.lines() {
        c.record(line.as_bytes(), &mut out);
    }
    assert_eq!(String::from_utf8(out).unwrap(), "one\ntw");
    assert!(c.exhausted());
    let mut out = Vec::new();
    Convert::new(&LogQuery::default()).record(b"garbage", &mut out);
    assert!(out.is_empty());
}

#[test]
fn tail_finds_the_start_of_the_last_records() {
    let mut f = Cursor::new(LOG.as_bytes().to_vec());
    let start = |f: &mut Cursor<Vec<u8>>, n| tail_start(f, n).unwrap() as usize;
    assert_eq!(
        &LOG[start(&mut f, 1)..],
        "2023-11-14T22:13:21.000000000Z stdout F three\n"
    );
    assert_eq!(start(&mut f, 0), LOG.len());
    assert_eq!(start(&mut f, 4), 0);
    assert_eq!(start(&mut f, 100), 0);
    // Records spread over several read blocks.
    let big: String = (0..5000)
        .map(|i| format!("t stdout F line {i}\n"))
        .collect();
    let mut f = Cursor::new(big.as_bytes().to_vec());
    let s = start(&mut f, 2);
    assert_eq!(&big[s..], "t stdout F line 4998\nt stdout F line 4999\n");
    assert_eq!(start(&mut Cursor::new(Vec::new()), 3), 0);
}
