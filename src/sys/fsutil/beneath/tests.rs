use super::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

fn tree(tag: &str) -> (PathBuf, PathBuf) {
    let base = std::env::temp_dir().join(format!("stl-beneath-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let root = base.join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("data/sub")).unwrap();
    fs::write(root.join("etc/inside"), "inside").unwrap();
    fs::write(base.join("host-secret"), "host").unwrap();
    // Absolute and relative links that point out of the tree, as a hostile container makes.
    symlink(base.join("host-secret"), root.join("etc/abs")).unwrap();
    symlink("../../host-secret", root.join("etc/rel")).unwrap();
    symlink("/etc/inside", root.join("etc/abs-inside")).unwrap();
    symlink("sub", root.join("data/to-sub")).unwrap();
    symlink("loop", root.join("data/loop")).unwrap();
    symlink(&base, root.join("data/out")).unwrap();
    (base, root)
}

fn read(fd: OwnedFd) -> String {
    let mut s = String::new();
    fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

type Opener = fn(&Path, &Path, Scope, libc::c_int) -> io::Result<OwnedFd>;

fn each_way(f: impl Fn(Opener)) {
    f(open);
    f(open_walking);
}

#[test]
fn beneath_refuses_every_way_out() {
    let (base, root) = tree("beneath");
    each_way(|o| {
        for p in [
            "etc/abs",
            "etc/rel",
            "etc/abs-inside",
            "data/out/host-secret",
            "../host-secret",
        ] {
            let e = o(&root, Path::new(p), Scope::Beneath, libc::O_RDONLY).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{p}: {e}");
        }
        assert_eq!(
            o(
                &root,
                Path::new("data/loop"),
                Scope::Beneath,
                libc::O_RDONLY
            )
            .unwrap_err()
            .raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(
            read(
                o(
                    &root,
                    Path::new("etc/inside"),
                    Scope::Beneath,
                    libc::O_RDONLY
                )
                .unwrap()
            ),
            "inside"
        );
        let d = o(
            &root,
            Path::new("data/to-sub"),
            Scope::Beneath,
            libc::O_PATH,
        )
        .unwrap();
        assert_eq!(file_type(&d).unwrap(), libc::S_IFDIR);
    });
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn in_root_resolves_as_the_container_sees_it() {
    let (base, root) = tree("inroot");
    each_way(|o| {
        // /etc/abs-inside -> /etc/inside: inside the image.
        assert_eq!(
            read(
                o(
                    &root,
                    Path::new("etc/abs-inside"),
                    Scope::InRoot,
                    libc::O_RDONLY
                )
                .unwrap()
            ),
            "inside"
        );
        // Links to host paths resolve inside the root, where nothing is.
        for p in ["etc/abs", "etc/rel", "../../host-secret"] {
            let e = o(&root, Path::new(p), Scope::InRoot, libc::O_RDONLY).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{p}: {e}");
        }
    });
    fs::remove_dir_all(base).unwrap();
}

#[test]
fn mkdir_all_creates_beneath_and_never_outside() {
    let (base, root) = tree("mkdir");
    let fd = mkdir_all(
        &root,
        Path::new("data/to-sub/new/deeper"),
        Scope::Beneath,
        0o750,
    )
    .unwrap();
    assert_eq!(file_type(&fd).unwrap(), libc::S_IFDIR);
    assert!(root.join("data/sub/new/deeper").is_dir());
    let e = mkdir_all(&root, Path::new("data/out/planted"), Scope::Beneath, 0o750).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EXDEV));
    assert!(!base.join("planted").exists());
    fs::remove_dir_all(base).unwrap();
}
