//! Where the CLI finds the console: `--url`/`--token`/`--ca`, else `VINFRA_URL`/`VINFRA_TOKEN`/
//! `VINFRA_CA`, else a config file, else defaults.
//!
//! The config file is the one named by `--config` (or `VINFRA_CONFIG`), else
//! `$XDG_CONFIG_HOME/vinfra/config.toml` (`~/.config/vinfra/config.toml`), else
//! `/etc/vinfra/cli.toml`; the first that exists is used. It is TOML with three optional keys:
//!
//! ```toml
//! url = "https://127.0.0.1:7443"
//! token = "..."
//! ca = "/var/lib/vinfra/console/pki/ca.pem"   # relative paths are relative to the file
//! ```
//!
//! A command resolves them only once it has checked its own arguments
//! ([`ConnectionOverrides::client`]), so bad input is reported as such even without a token.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vinfra_client::{Client, RestError, CONSOLE_CA_FILE};

/// Default URL of the REST API.
pub const DEFAULT_URL: &str = "https://127.0.0.1:7443";
/// Default data directory of `vinfra console`; its CA is used when no other is given.
pub const DEFAULT_CONSOLE_DIR: &str = "/var/lib/vinfra/console";

/// Why the connection settings could not be worked out, or the client not set up with them.
#[derive(Debug, thiserror::Error)]
pub enum CliConfigError {
    /// No API token anywhere; the message names the config file looked for.
    #[error("no API token: pass --token, set VINFRA_TOKEN or put token = \"...\" in {0}")]
    NoToken(PathBuf),
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("bad config file {path}: {reason}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it: the TOML parser's message, without its excerpt of the file.
        reason: String,
    },
    /// An `https://` URL without a CA certificate to trust.
    #[error(
        "no CA certificate for {0}: pass --ca, set VINFRA_CA or add ca = \"...\" to the config file"
    )]
    NoCa(String),
    /// The CA certificate file could not be read.
    #[error("cannot read CA certificate {path}")]
    Ca {
        /// The CA certificate file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The client could not be set up with these settings.
    #[error(transparent)]
    Client(#[from] RestError),
}

impl CliConfigError {
    /// True when the settings given are at fault (all but a client that cannot be built).
    pub fn is_usage(&self) -> bool {
        match self {
            CliConfigError::Client(e) => e.is_client_error(),
            CliConfigError::NoToken(_)
            | CliConfigError::Read { .. }
            | CliConfigError::Parse { .. }
            | CliConfigError::NoCa(_)
            | CliConfigError::Ca { .. } => true,
        }
    }
}

/// What the config file may hold.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Base URL of the REST API.
    pub url: Option<String>,
    /// API token.
    pub token: Option<String>,
    /// CA certificate (PEM) to trust; relative to the file's directory when relative.
    pub ca: Option<PathBuf>,
}

/// Connection settings given on the command line or in the environment, and the config file
/// named there.
#[derive(Debug, Default, Clone)]
pub struct ConnectionOverrides {
    /// `--url` / `VINFRA_URL`.
    pub url: Option<String>,
    /// `--token` / `VINFRA_TOKEN`.
    pub token: Option<String>,
    /// `--ca` / `VINFRA_CA`.
    pub ca: Option<PathBuf>,
    /// `--config` / `VINFRA_CONFIG`.
    pub config: Option<PathBuf>,
}

impl ConnectionOverrides {
    /// A client of the console, with these settings completed from the config file.
    pub fn client(&self) -> Result<Client, CliConfigError> {
        resolve(self)?.client()
    }
}

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionSettings {
    /// Base URL of the REST API.
    pub url: String,
    /// API token.
    pub token: String,
    /// CA certificate to trust, if any.
    pub ca: Option<PathBuf>,
}

fn default_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".config"));
    if let Some(dir) = xdg.or(home) {
        files.push(dir.join("vinfra/config.toml"));
    }
    files.push(PathBuf::from("/etc/vinfra/cli.toml"));
    files
}

/// Parses a config file's text.
pub fn parse_file(path: &Path, text: &str) -> Result<ConfigFile, CliConfigError> {
    let mut cfg: ConfigFile = toml::from_str(text).map_err(|e| CliConfigError::Parse {
        path: path.to_path_buf(),
        reason: e.message().replace('\n', " "),
    })?;
    if let Some(ca) = &cfg.ca {
        if ca.is_relative() {
            cfg.ca = Some(path.parent().unwrap_or(Path::new("/")).join(ca));
        }
    }
    Ok(cfg)
}

fn load_file(explicit: Option<&Path>) -> Result<(Option<PathBuf>, ConfigFile), CliConfigError> {
    let candidates = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => default_files(),
    };
    for path in candidates {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok((Some(path.clone()), parse_file(&path, &text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => continue,
            Err(source) => return Err(CliConfigError::Read { path, source }),
        }
    }
    Ok((None, ConfigFile::default()))
}

/// Combines the command line, the environment (already folded into `o` by clap) and the config
/// file.
pub fn resolve(o: &ConnectionOverrides) -> Result<ConnectionSettings, CliConfigError> {
    let (file_path, file) = load_file(o.config.as_deref())?;
    let url = o
        .url
        .clone()
        .or(file.url)
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let where_ =
        file_path.unwrap_or_else(|| default_files().into_iter().next().unwrap_or_default());
    let token = o
        .token
        .clone()
        .or(file.token)
        .filter(|t| !t.trim().is_empty())
        .ok_or(CliConfigError::NoToken(where_))?;
    let ca = o.ca.clone().or(file.ca).or_else(|| {
        let default = Path::new(DEFAULT_CONSOLE_DIR).join(CONSOLE_CA_FILE);
        default.is_file().then_some(default)
    });
    Ok(ConnectionSettings {
        url,
        token: token.trim().to_string(),
        ca,
    })
}

impl ConnectionSettings {
    /// A REST client with these settings.
    pub fn client(&self) -> Result<Client, CliConfigError> {
        let pem = match &self.ca {
            Some(path) => Some(std::fs::read(path).map_err(|source| CliConfigError::Ca {
                path: path.clone(),
                source,
            })?),
            None if self.url.trim_end_matches('/').starts_with("https://") => {
                return Err(CliConfigError::NoCa(
                    self.url.trim_end_matches('/').to_string(),
                ))
            }
            None => None,
        };
        Ok(Client::new(&self.url, &self.token, pem.as_deref())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file() {
        let cfg = parse_file(
            Path::new("/etc/vinfra/cli.toml"),
            "url = \"https://h:1\"\ntoken = \"abc\"\nca = \"ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(cfg.url.as_deref(), Some("https://h:1"));
        assert_eq!(cfg.token.as_deref(), Some("abc"));
        assert_eq!(cfg.ca, Some(PathBuf::from("/etc/vinfra/ca.pem")));
        assert!(parse_file(Path::new("/x"), "colour = \"red\"").is_err());
        assert!(parse_file(Path::new("/x"), "url = ").is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "url = \"https://file:1\"\ntoken = \"file\"\n").unwrap();
        let o = ConnectionOverrides {
            token: Some("flag".into()),
            config: Some(path.clone()),
            ..Default::default()
        };
        let s = resolve(&o).unwrap();
        assert_eq!(s.url, "https://file:1");
        assert_eq!(s.token, "flag");
        let missing = ConnectionOverrides {
            config: Some(dir.path().join("none.toml")),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&missing),
            Err(CliConfigError::Read { .. })
        ));
        std::fs::write(&path, "url = \"https://file:1\"\n").unwrap();
        let o = ConnectionOverrides {
            config: Some(path),
            ..Default::default()
        };
        assert!(matches!(resolve(&o), Err(CliConfigError::NoToken(_))));
    }
}
