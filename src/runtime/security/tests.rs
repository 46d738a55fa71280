use super::*;
use crate::manifest::{self, Source};

fn pod(spec_extra: &str, container_extra: &str) -> StaticPod {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: ops}}\nspec:\n{spec_extra}  containers:\n  - name: c\n    image: busybox\n{container_extra}"
    );
    manifest::load(yaml.as_bytes(), &Source::File("/m/web.yaml".into()), "gw1").unwrap()
}

fn settings() -> Settings {
    Settings {
        seccomp_root: "/nonexistent/seccomp".into(),
        host_caps: host_capabilities(),
        ..Default::default()
    }
}

#[test]
fn run_as_non_root_is_checked_as_the_kubelet_does() {
    let p = pod("  securityContext: {runAsNonRoot: true}\n", "");
    let c = p.container(0);
    let e = verify_run_as_non_root(&p, c, "").unwrap_err();
    assert_eq!(e.reason(), "CreateContainerConfigError");
    assert_eq!(
        e.to_string(),
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"web-gw1_ops({})\", container: c)",
            p.uid()
        )
    );
    assert!(verify_run_as_non_root(&p, c, "0:0").is_err());
    assert!(verify_run_as_non_root(&p, c, "1000").is_ok());
    assert!(verify_run_as_non_root(&p, c, "1000:1000").is_ok());
    let named = verify_run_as_non_root(&p, c, "nobody").unwrap_err();
    assert!(named
        .to_string()
        .contains("image has non-numeric user (nobody), cannot verify user is non-root"));
    // runAsUser decides when set; the container's runAsNonRoot overrides the pod's.
    let p = pod(
        "  securityContext: {runAsNonRoot: true}\n",
        "    securityContext: {runAsUser: 0}\n",
    );
    let e = verify_run_as_non_root(&p, p.container(0), "1000").unwrap_err();
    assert!(e
        .to_string()
        .starts_with("container's runAsUser breaks non-root policy"));
    let p = pod(
        "  securityContext: {runAsNonRoot: true}\n",
        "    securityContext: {runAsNonRoot: false}\n",
    );
    assert!(verify_run_as_non_root(&p, p.container(0), "").is_ok());
}

#[test]
fn seccomp_follows_container_then_pod_then_seccomp_default() {
    let plain = pod("", "");
    let s = decide(&plain, plain.container(0), "", &settings()).unwrap();
    assert!(s.seccomp.is_none(), "Unconfined without seccompDefault");
    let mut with_default = settings();
    with_default.seccomp_default = true;
    let s = decide(&plain, plain.container(0), "", &with_default).unwrap();
    assert!(s.seccomp.is_some(), "RuntimeDefault with seccompDefault");
    let p = pod(
        "  securityContext: {seccompProfile: {type: RuntimeDefault}}\n",
        "    securityContext: {seccompProfile: {type: Unconfined}}\n",
    );
    assert!(decide(&p, p.container(0), "", &settings())
        .unwrap()
        .seccomp
        .is_none());
    let p = pod(
        "  securityContext: {seccompProfile: {type: RuntimeDefault}}\n",
        "",
    );
    assert!(decide(&p, p.container(0), "", &settings())
        .unwrap()
        .seccomp
        .is_some());
    let privileged = pod(
        "  securityContext: {seccompProfile: {type: RuntimeDefault}}\n",
        "    securityContext: {privileged: true}\n",
    );
    let s = decide(&privileged, privileged.container(0), "", &settings()).unwrap();
    assert!(s.seccomp.is_none() && s.privileged && !s.no_new_privileges);
    let local = pod(
        "  securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}}\n",
        "",
    );
    let e = decide(&local, local.container(0), "", &settings()).unwrap_err();
    assert_eq!(e.reason(), "CreateContainerError");
    assert!(
        e.to_string()
            .contains("/nonexistent/seccomp/profiles/audit.json"),
        "{e}"
    );
}

#[test]
fn groups_and_sysctls() {
    let p = pod(
        "  securityContext:\n    fsGroup: 2000\n    supplementalGroups: [3000, 2000]\n    sysctls: [{name: kernel.msgmax, value: '65536'}]\n",
        "",
    );
    assert_eq!(supplementary_groups(&p), [2000, 3000]);
    let e = decide(&p, p.container(0), "", &settings()).unwrap_err();
    assert_eq!(e.reason(), "SysctlForbidden");
    assert_eq!(
        e.to_string(),
        "forbidden sysctl: \"kernel.msgmax\" not allowlisted"
    );
    let mut allow = settings();
    allow.allowed_unsafe_sysctls = vec!["kernel.msg*".into()];
    let s = decide(&p, p.container(0), "", &allow).unwrap();
    assert_eq!(
        s.sysctls.get("kernel.msgmax").map(String::as_str),
        Some("65536")
    );
}
