//! Arguments of `certs ...`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `certs ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum CertsCommand {
    /// Create the fleet's CA (ca.pem, ca-key.pem) in the certs directory.
    Init(CertsInitArgs),
    /// Issue a server certificate (for berthd --listen) or a client
    /// certificate (for berthctl), signed by the CA: NAME.pem, NAME-key.pem.
    Issue(CertsIssueArgs),
}

// `certs init`.
#[derive(Debug, Args)]
pub struct CertsInitArgs {
    /// Directory of the CA and certificates (default: ~/.config/berth/certs).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Common name of the CA.
    #[arg(long, default_value = "berth fleet CA")]
    pub name: String,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    pub days: u32,
    /// Replace an existing CA (every certificate it signed stops working).
    #[arg(long)]
    pub force: bool,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertKind {
    /// An agent's certificate: TLS server authentication.
    Server,
    /// berthctl's certificate: TLS client authentication.
    Client,
}

// `certs issue`.
#[derive(Debug, Args)]
pub struct CertsIssueArgs {
    /// server or client.
    #[arg(value_enum)]
    pub kind: CertKind,
    /// Name of the certificate (file names and common name).
    pub name: String,
    /// Subject alternative name: a DNS name or an IP address the agent is
    /// reached at (repeatable; default: NAME).
    #[arg(long = "san", value_name = "NAME|IP")]
    pub sans: Vec<String>,
    /// Directory of the CA and certificates (default: ~/.config/berth/certs).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Validity in days.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
    /// Replace existing files of that name.
    #[arg(long)]
    pub force: bool,
}
