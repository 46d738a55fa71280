//! What `/containerLogs/<namespace>/<pod>/<container>` serves, decided without I/O: the
//! kubelet's query parameters (`follow`, `previous`, `tailLines`, `limitBytes`,
//! `sinceSeconds`, `sinceTime`, `timestamps`), which log file answers, and the kubelet's own
//! words when none does (a container still waiting says why). Also the conversion of CRI log
//! records back into the container's output.

use super::{LogPaths, Shared};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A refused log request: the HTTP status and the kubelet's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: String) -> Refusal {
    Refusal { status, message }
}

/// The kubelet's `PodLogOptions`, as far as a log file can answer them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub since: Option<SystemTime>,
}

/// Reads the query string as the API server's conversion does: a boolean is true unless it
/// is `false` or `0`; numbers must be whole and in range; unknown keys are ignored.
pub fn parse_query(query: &str, now: SystemTime) -> Result<LogQuery, Refusal> {
    let mut q = LogQuery::default();
    let mut since_seconds = None;
    let mut since_time = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        let boolean = !(value == "0" || value.eq_ignore_ascii_case("false"));
        let number = |min: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| {
                    refuse(
                        400,
                        format!("{key}={value:?}: must be a whole number of at least {min}"),
                    )
                })
        };
        match key {
            "follow" => q.follow = boolean,
            "previous" => q.previous = boolean,
            "timestamps" => q.timestamps = boolean,
            "tailLines" => q.tail_lines = Some(number(0)?),
            "limitBytes" => q.limit_bytes = Some(number(1)?),
            "sinceSeconds" => since_seconds = Some(number(1)?),
            "sinceTime" => {
                let t = crate::sys::timefmt::parse_rfc3339(&value).ok_or_else(|| {
                    refuse(
                        400,
                        format!("sinceTime={value:?}: must be an RFC 3339 time"),
                    )
                })?;
                since_time = Some(t);
            }
            _ => {}
        }
    }
    q.since = match (since_seconds, since_time) {
        (Some(_), Some(_)) => {
            return Err(refuse(
                400,
                "at most one of sinceTime or sinceSeconds may be specified".into(),
            ))
        }
        (Some(s), None) => Some(now.checked_sub(Duration::from_secs(s)).unwrap_or(now)),
        (None, t) => t,
    };
    Ok(q)
}

/// The file that answers a log request, and what to follow it by.
#[derive(Debug, Clone)]
pub struct Target {
    pub file: PathBuf,
    /// Set when the request follows a running container.
    pub follow: Option<LogPaths>,
}

/// Finds the log of `namespace/pod/container`, or says why there is none in the kubelet's
/// words (`validateContainerLogStatus`): 404 for an unknown pod or container, 400 for one
/// that has no log (yet).
pub fn find(
    s: &Shared,
    namespace: &str,
    pod: &str,
    container: &str,
    q: &LogQuery,
) -> Result<Target, Refusal> {
    let pod_json = &s
        .pods
        .iter()
        .find(|p| p.pod.namespace() == namespace && p.pod.name() == pod)
        .ok_or_else(|| refuse(404, format!("pod {pod:?} does not exist")))?
        .to_json();
    let in_spec = ["initContainers", "containers"].iter().any(|k| {
        pod_json["spec"][*k]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["name"] == container))
    });
    if !in_spec {
        return Err(refuse(
            404,
            format!("container {container:?} not found in pod {pod:?}"),
        ));
    }
    let paths = s
        .log_paths
        .iter()
        .find(|l| l.namespace == namespace && l.pod == pod && l.container == container);
    if q.previous {
        return match paths.and_then(|l| l.previous.clone()) {
            Some(file) => Ok(Target { file, follow: None }),
            None => Err(refuse(
                400,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            )),
        };
    }
    if let Some(l) = paths {
        return Ok(Target {
            file: l.current.clone(),
            follow: (q.follow && l.running).then(|| l.clone()),
        });
    }
    let status = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|k| pod_json["status"][*k].as_array())
        .flatten()
        .find(|c| c["name"] == container);
    Err(refuse(400, not_started(pod, container, status)))
}

/// Why a container without any log has none, as the kubelet says it.
fn not_started(pod: &str, container: &str, status: Option<&Value>) -> String {
    let prefix = format!("container {container:?} in pod {pod:?}");
    let waiting = status.and_then(|c| c["state"]["waiting"]["reason"].as_str());
    match waiting {
        Some("ErrImagePull") => format!("{prefix} is waiting to start: image can't be pulled"),
        Some("ImagePullBackOff") => {
            format!("{prefix} is waiting to start: trying and failing to pull image")
        }
        Some(reason) => format!("{prefix} is waiting to start: {reason}"),
        None if status.is_some_and(|c| c["state"].get("terminated").is_some()) => {
            format!("{prefix} is terminated")
        }
        None => format!("{prefix} is waiting to start - no logs yet"),
    }
}

/// Turns CRI records (`<time> <stream> <F|P> <content>`) into the container's output, with
/// `timestamps`, `since` and `limitBytes` applied as the kubelet applies them.
#[derive(Debug, Clone)]
pub struct Convert {
    timestamps: bool,
    since: Option<SystemTime>,
    remaining: Option<u64>,
    at_line_start: bool,
}

impl Convert {
    pub fn new(q: &LogQuery) -> Convert {
        Convert {
            timestamps: q.timestamps,
            since: q.since,
            remaining: q.limit_bytes,
            at_line_start: true,
        }
    }

    /// True once `limitBytes` is used up: nothing more will be written.
    pub fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Appends the output of one record (without its newline); malformed records are skipped.
    pub fn record(&mut self, record: &[u8], out: &mut Vec<u8>) {
        let mut parts = record.splitn(4, |b| *b == b' ');
        let (Some(ts), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let content = parts.next().unwrap_or_default();
        if let Some(since) = self.since {
            let when = std::str::from_utf8(ts)
                .ok()
                .and_then(crate::sys::timefmt::parse_rfc3339);
            if when.is_some_and(|t| t < since) {
                return;
            }
        }
        let start = out.len();
        if self.timestamps && self.at_line_start {
            out.extend_from_slice(ts);
            out.push(b' ');
        }
        out.extend_from_slice(content);
        let partial = tag == b"P";
        if !partial {
            out.push(b'\n');
        }
        self.at_line_start = !partial;
        if let Some(left) = self.remaining.as_mut() {
            let written = (out.len() - start) as u64;
            if written >= *left {
                out.truncate(start + *left as usize);
                *left = 0;
            } else {
                *left -= written;
            }
        }
    }
}

/// Where the last `n` records of a log start, reading backwards from the end in blocks (as
/// the kubelet's `tail.FindTailLineStartIndex` does), so a tail of a big log stays cheap.
pub fn tail_start(file: &mut (impl std::io::Read + std::io::Seek), n: u64) -> std::io::Result<u64> {
    use std::io::SeekFrom;
    let size = file.seek(SeekFrom::End(0))?;
    if n == 0 {
        return Ok(size);
    }
    let mut block = vec![0u8; 8 * 1024];
    let mut end = size;
    let mut found = 0;
    // The newline that ends the last record does not start one.
    let mut skip_last = true;
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let len = (end - start) as usize;
        let buf = block.get_mut(..len).unwrap_or_default();
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(buf)?;
        for (i, b) in buf.iter().enumerate().rev() {
            if *b != b'\n' {
                continue;
            }
            if skip_last && start + i as u64 + 1 == size {
                skip_last = false;
                continue;
            }
            found += 1;
            if found == n {
                return Ok(start + i as u64 + 1);
            }
        }
        skip_last = false;
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
