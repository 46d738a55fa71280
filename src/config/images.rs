//! What the image store needs from the configuration: where registry certificates and
//! credentials are, and which registries are plain HTTP.

use super::Config;
use crate::image::pull::PullOptions;
use std::path::PathBuf;

impl Config {
    pub fn pull_options(&self) -> PullOptions {
        PullOptions {
            config_dir: self.config_dir.clone(),
            insecure: self.insecure_registries.clone(),
            credentials: self
                .image_credentials
                .clone()
                .or_else(|| Some(PathBuf::from("/root/.docker/config.json"))),
            ..PullOptions::default()
        }
    }
}
