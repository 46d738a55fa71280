//! The flags of `staticlet images`. `--root-dir` and `--config` belong to `images`, but people
//! type them after the verb too (`images list --root-dir X`), as kubectl and crictl accept
//! flags anywhere: every verb takes them as well, and the verb's own value wins.

use argh::FromArgs;
use std::path::{Path, PathBuf};

/// manage the local image store
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "images")]
pub struct ImagesCmd {
    #[argh(subcommand)]
    pub action: ImagesAction,
    /// configuration file (for the root dir)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
}

impl ImagesCmd {
    /// `--config`, given after the verb or before it.
    pub fn config(&self) -> Option<&PathBuf> {
        self.action.paths().0.or(self.config.as_ref())
    }

    /// `--root-dir`, given after the verb or before it.
    pub fn root_dir(&self) -> Option<&Path> {
        self.action
            .paths()
            .1
            .or(self.root_dir.as_ref())
            .map(PathBuf::as_path)
    }
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum ImagesAction {
    Import(ImagesImport),
    List(ImagesList),
    Rm(ImagesRm),
    Pull(ImagesPull),
}

impl ImagesAction {
    fn paths(&self) -> (Option<&PathBuf>, Option<&PathBuf>) {
        let (config, root_dir) = match self {
            ImagesAction::Import(a) => (&a.config, &a.root_dir),
            ImagesAction::List(a) => (&a.config, &a.root_dir),
            ImagesAction::Rm(a) => (&a.config, &a.root_dir),
            ImagesAction::Pull(a) => (&a.config, &a.root_dir),
        };
        (config.as_ref(), root_dir.as_ref())
    }
}

/// pull an image from its registry into the store
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pull")]
pub struct ImagesPull {
    /// image reference, e.g. registry.example/ops/app:1.4 or busybox@sha256:...
    #[argh(positional)]
    pub reference: String,
    /// a Docker config.json with registry credentials (default /root/.docker/config.json)
    #[argh(option)]
    pub image_credentials: Option<PathBuf>,
    /// configuration file (for the root dir)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
}

/// import an OCI layout directory, an OCI archive or a docker archive
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import")]
pub struct ImagesImport {
    /// the layout directory or archive
    #[argh(positional)]
    pub path: PathBuf,
    /// name to store the image under (default: the name in the archive)
    #[argh(option)]
    pub name: Option<String>,
    /// configuration file (for the root dir)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
}

/// list stored images
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct ImagesList {
    /// configuration file (for the root dir)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
}

/// remove a stored image
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "rm")]
pub struct ImagesRm {
    /// image reference
    #[argh(positional)]
    pub reference: String,
    /// configuration file (for the root dir)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
}
