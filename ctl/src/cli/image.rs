//! Arguments of `image ...` (and the top-level forms of `history` and
//! `save`).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

// `image history` and `history`.
#[derive(Debug, Args)]
pub struct ImageHistoryArgs {
    /// Print only the IMAGE column.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show full image ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// The image: reference, id or id prefix.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

/// Archive formats of `image save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormatArg {
    /// `docker save`'s format (manifest.json), what `docker load` reads.
    Docker,
    /// An OCI image layout (index.json, blobs/).
    Oci,
}

// `image save` and `save`.
#[derive(Debug, Args)]
pub struct ImageSaveArgs {
    /// Write the archive to FILE rather than standard output (`-o FILE`
    /// and `--output FILE` work too, as with Docker). FILE appears only
    /// once the archive is complete.
    #[arg(long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Archive format.
    #[arg(long, value_enum, default_value_t = SaveFormatArg::Docker)]
    pub format: SaveFormatArg,
    /// Image references, ids or id prefixes.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `image ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ImageCommand {
    /// Import an OCI layout or `docker save` tar archive ("-" reads stdin).
    Import(ImportArgs),
    /// List images.
    #[command(visible_alias = "list")]
    Ls(ImageLsArgs),
    /// Remove image references, and images left without any.
    #[command(visible_alias = "remove")]
    Rm(ImageRmArgs),
    /// Show images in detail, as a JSON array.
    Inspect(ImageInspectArgs),
    /// Give an image one more reference (a reference another image had
    /// moves to this one).
    Tag(ImageTagArgs),
    /// Show how an image was made (its config's history), newest step first.
    History(ImageHistoryArgs),
    /// Save images to a tar archive (Docker's format, or an OCI layout),
    /// to standard output unless -o FILE.
    Save(ImageSaveArgs),
    /// Push an image to a registry (the agent pushes it), showing progress.
    Push(crate::cmd::PushArgs),
    /// Remove dangling images no container uses (with -a, every unused one).
    Prune(super::ImagePruneArgs),
}

// `image tag` and `tag`.
#[derive(Debug, Args)]
pub struct ImageTagArgs {
    /// The image: reference, id or id prefix.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new reference, e.g. app:v2 or registry:5000/team/app:v2.
    #[arg(value_name = "TARGET")]
    pub target: String,
}

// `image ls` and `images`.
#[derive(Debug, Args)]
pub struct ImageLsArgs {
    /// Print only image ids, one per image.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show full image ids (sha256:...).
    #[arg(long)]
    pub no_trunc: bool,
    /// Format the output: `table`, `table TEMPLATE`, `json` or a Go
    /// TEMPLATE over each reference of an image ({{.Repository}} {{.Tag}} {{.ID}} {{.Digest}} {{.CreatedSince}} {{.CreatedAt}} {{.Size}}, and every field of `-o json` in PascalCase).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

// `image import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Archive to import, or "-" for standard input.
    pub file: String,
    /// Reference to give the image (e.g. busybox:test).
    #[arg(short = 'r', long)]
    pub reference: Option<String>,
}

// `image rm`.
#[derive(Debug, Args)]
pub struct ImageRmArgs {
    /// Remove even while containers use the image.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Image references, ids or id prefixes.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

// Commands that take one or more images.
#[derive(Debug, Args)]
pub struct ImageIdsArgs {
    /// Image references, ids or id prefixes.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

// `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
    /// Format the output: `table`, `table TEMPLATE`, `json` or a Go
    /// TEMPLATE over each container (the fields of `-o json` in PascalCase: {{.Name}} {{.State}} {{.Spec.Image}} {{json .Labels}}).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

// `image inspect`.
#[derive(Debug, Args)]
pub struct ImageInspectArgs {
    /// Image references, ids or id prefixes.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Format the output: `table`, `table TEMPLATE`, `json` or a Go
    /// TEMPLATE over each image (the fields of `-o json` in PascalCase: {{.Id}} {{json .References}} {{.Config.Cmd}}).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}
