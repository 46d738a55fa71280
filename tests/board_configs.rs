//! The per-board configurations in `board-configs/` ship on gateway images (the Buildroot
//! post-build scripts copy them to `/etc/staticlet/config.yaml`), so each one must load with
//! the real loader, and every Buildroot defconfig must have its board's file.

use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn board_configs() -> Vec<PathBuf> {
    let dir = repo().join("board-configs");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_board_config_loads_with_the_real_loader() {
    let files = board_configs();
    assert!(!files.is_empty(), "no board-configs/*.yaml");
    let mut failures = Vec::new();
    for file in &files {
        match staticlet::config::load_file(file) {
            Ok(config) => {
                if !config.node_labels.contains_key("staticlet.dev/board") {
                    failures.push(format!(
                        "{}: nodeLabels has no staticlet.dev/board",
                        file.display()
                    ));
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_supported_boards_have_a_config() {
    let names: Vec<String> = board_configs()
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for board in [
        "raspberrypi4_64",
        "raspberrypi3_64",
        "beaglebone",
        "qemu_aarch64_virt",
        "generic_x86_64",
    ] {
        assert!(
            names.iter().any(|n| n == board),
            "board-configs/{board}.yaml is missing"
        );
    }
}

#[test]
fn every_buildroot_defconfig_has_a_board_config() {
    let configs = repo().join("buildroot/configs");
    let entries =
        std::fs::read_dir(&configs).unwrap_or_else(|e| panic!("{}: {e}", configs.display()));
    let mut checked = 0;
    for entry in entries {
        let name = entry
            .unwrap_or_else(|e| panic!("{}: {e}", configs.display()))
            .file_name();
        let name = name.to_string_lossy();
        let Some(board) = name.strip_suffix("_staticlet_defconfig") else {
            continue;
        };
        let config = repo().join("board-configs").join(format!("{board}.yaml"));
        assert!(config.is_file(), "{name} has no {}", config.display());
        let post_build = repo()
            .join("buildroot/board")
            .join(board)
            .join("post-build.sh");
        assert!(
            post_build.is_file(),
            "{name} has no {}",
            post_build.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "only {checked} *_staticlet_defconfig files in {}",
        configs.display()
    );
}
