//! Arguments of `image history` and `image save` (and their top-level
//! forms).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

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
