//! `staticlet validate FILE...`: reads manifests exactly as `run` does (same filters, same
//! checks, same duplicate rule) and prints one line per problem.
//!
//! Fields that a v1 Pod does not have (`comand`) are warnings, as the kubelet ignores them;
//! `--strict` makes them problems, as `kubectl --validate=strict` does.

use crate::cli::{base_config, Failure, ValidateCmd};
use crate::desired::DesiredSet;
use crate::manifest::Source;
use crate::source::dir::DirSource;
use crate::source::SourceKey;
use crate::sys::logging::escape;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

pub fn run(cmd: &ValidateCmd) -> Result<(), Failure> {
    if cmd.files.is_empty() {
        return Err(Failure::Usage(
            "validate: name at least one manifest file or directory".into(),
        ));
    }
    let mut config = base_config(cmd.config.as_ref())?;
    if let Some(n) = &cmd.node_name {
        config.node_name = n.clone();
    }
    let mut problems = 0;
    // One desired set across all arguments, so duplicate names across files are caught.
    let keys: Vec<SourceKey> = cmd
        .files
        .iter()
        .map(|f| SourceKey::Dir(f.clone()))
        .collect();
    let mut set = DesiredSet::new(keys);
    let mut unknown = Vec::new();
    for path in &cmd.files {
        if !path.exists() {
            eprintln!(
                "{}: (file): cannot read: no such file or directory",
                escape(&path.display().to_string())
            );
            problems += 1;
            continue;
        }
        let mut source = DirSource::new(path.clone(), config.node_name.clone());
        // The settle delay only matters to a running agent; validate reads everything now.
        source.relist(SystemTime::now() + std::time::Duration::from_secs(3600));
        for (file, fields) in source.unknown_fields() {
            for f in fields {
                unknown.push((file.to_path_buf(), f.clone()));
            }
        }
        set.apply(source.snapshot(), &crate::sys::timefmt::now_rfc3339());
    }
    let desired = set.desired();
    for p in &desired.problems {
        for line in p.message.lines() {
            println!("{line}");
        }
        problems += p.message.lines().count();
    }
    let mut refused: BTreeSet<PathBuf> = BTreeSet::new();
    for (file, f) in &unknown {
        let line = format!(
            "{}: {}: {}",
            escape(&file.display().to_string()),
            escape(&f.field),
            escape(&f.message)
        );
        if cmd.strict {
            println!("{line}");
            problems += 1;
            refused.insert(file.clone());
        } else {
            println!("{line} (warning: ignored, as the kubelet does; --strict refuses it)");
        }
    }
    let mut pods = 0;
    for pod in desired.pods.values() {
        if matches!(&pod.source, Source::File(f) if refused.contains(f)) {
            continue;
        }
        pods += 1;
        log::debug!("{}: ok ({})", pod.source, pod.full_name());
    }
    if problems > 0 {
        return Err(Failure::Failed(format!(
            "{problems} problem(s) found; {pods} pod(s) valid"
        )));
    }
    println!("{pods} pod(s) valid");
    Ok(())
}
