//! `staticlet validate FILE...`: reads manifests exactly as `run` does (same filters, same
//! checks, same duplicate rule) and prints one line per problem.

use crate::cli::{base_config, Failure, ValidateCmd};
use crate::desired::DesiredSet;
use crate::source::dir::DirSource;
use crate::source::SourceKey;
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
    let mut pods = 0;
    // One desired set across all arguments, so duplicate names across files are caught.
    let keys: Vec<SourceKey> = cmd
        .files
        .iter()
        .map(|f| SourceKey::Dir(f.clone()))
        .collect();
    let mut set = DesiredSet::new(keys);
    for path in &cmd.files {
        if !path.exists() {
            eprintln!(
                "{}: (file): cannot read: no such file or directory",
                path.display()
            );
            problems += 1;
            continue;
        }
        let mut source = DirSource::new(path.clone(), config.node_name.clone());
        // The settle delay only matters to a running agent; validate reads everything now.
        source.relist(SystemTime::now() + std::time::Duration::from_secs(3600));
        set.apply(source.snapshot(), &crate::timefmt::now_rfc3339());
    }
    let desired = set.desired();
    for p in &desired.problems {
        for line in p.message.lines() {
            println!("{line}");
        }
        problems += p.message.lines().count();
    }
    for pod in desired.pods.values() {
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
