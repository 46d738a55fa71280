//! The policies a pod spec names by string, as enums: validation has refused any other
//! value before a pod gets here, so the rest of the pipeline matches on variants, never on
//! text.

use std::fmt;

/// `spec.restartPolicy`: whether a container that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The policy a validated value names; the kubelet's default (`Always`) when unset.
    pub fn parse(value: Option<&str>) -> RestartPolicy {
        match value {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that ended with `exit_code` is started again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// `imagePullPolicy`: when an image is fetched from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Fetched before each start (offline-first here: a present image is used at once and
    /// refreshed in the background).
    Always,
    IfNotPresent,
    /// Never fetched: the image must be imported.
    Never,
}

impl PullPolicy {
    pub fn parse(value: &str) -> Option<PullPolicy> {
        match value {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        })
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_read_as_the_kubelet_reads_them() {
        assert_eq!(RestartPolicy::parse(None), RestartPolicy::Always);
        assert_eq!(RestartPolicy::parse(Some("Never")), RestartPolicy::Never);
        assert!(RestartPolicy::OnFailure.restarts(1));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(RestartPolicy::Always.restarts(0));
        assert!(!RestartPolicy::Never.restarts(1));
        assert_eq!(PullPolicy::parse("Never"), Some(PullPolicy::Never));
        assert_eq!(PullPolicy::parse("never"), None);
        assert_eq!(PullPolicy::IfNotPresent.to_string(), "IfNotPresent");
    }
}
