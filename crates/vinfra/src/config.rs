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

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vinfra_lab::ApiClient;

/// Default URL of the REST API.
pub const DEFAULT_URL: &str = "https://127.0.0.1:7443";
/// Default data directory of `vinfra console`; its CA is used when no other is given.
pub const DEFAULT_CONSOLE_DIR: &str = "/var/lib/vinfra/console";

/// Why the connection settings could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No API token anywhere.
    #[error("no API token: pass --token, set VINFRA_TOKEN or put token = \"...\" in {0}")]
    NoToken(String),
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("bad config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// The CA certificate file could not be read.
    #[error("cannot read CA certificate {path}")]
    Ca {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The client could not be set up.
    #[error(transparent)]
    Client(#[from] vinfra_lab::ApiError),
}

/// What the config file may hold.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub url: Option<String>,
    pub token: Option<String>,
    pub ca: Option<PathBuf>,
}

/// Settings given on the command line or in the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub url: Option<String>,
    pub token: Option<String>,
    pub ca: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub url: String,
    pub token: String,
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
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let mut cfg: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
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

fn load_file(explicit: Option<&Path>) -> Result<(Option<PathBuf>, FileConfig), ConfigError> {
    let candidates = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => default_files(),
    };
    for path in candidates {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok((Some(path.clone()), parse_file(&path, &text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => continue,
            Err(source) => return Err(ConfigError::Read { path, source }),
        }
    }
    Ok((None, FileConfig::default()))
}

/// Combines the command line, the environment (already folded into `o` by clap) and the config
/// file.
pub fn resolve(o: &Overrides) -> Result<Settings, ConfigError> {
    let (file_path, file) = load_file(o.config.as_deref())?;
    let url = o
        .url
        .clone()
        .or(file.url)
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let where_ = file_path
        .unwrap_or_else(|| default_files().into_iter().next().unwrap_or_default())
        .display()
        .to_string();
    let token = o
        .token
        .clone()
        .or(file.token)
        .filter(|t| !t.trim().is_empty())
        .ok_or(ConfigError::NoToken(where_))?;
    let ca = o.ca.clone().or(file.ca).or_else(|| {
        let default = Path::new(DEFAULT_CONSOLE_DIR).join(vinfra_lab::CA_PATH_IN_DATA_DIR);
        default.is_file().then_some(default)
    });
    Ok(Settings {
        url,
        token: token.trim().to_string(),
        ca,
    })
}

impl Settings {
    /// A REST client with these settings.
    pub fn client(&self) -> Result<ApiClient, ConfigError> {
        let pem = match &self.ca {
            Some(path) => Some(std::fs::read(path).map_err(|source| ConfigError::Ca {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        Ok(ApiClient::new(&self.url, &self.token, pem.as_deref())?)
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
        let o = Overrides {
            token: Some("flag".into()),
            config: Some(path.clone()),
            ..Default::default()
        };
        let s = resolve(&o).unwrap();
        assert_eq!(s.url, "https://file:1");
        assert_eq!(s.token, "flag");
        let missing = Overrides {
            config: Some(dir.path().join("none.toml")),
            ..Default::default()
        };
        assert!(matches!(resolve(&missing), Err(ConfigError::Read { .. })));
        std::fs::write(&path, "url = \"https://file:1\"\n").unwrap();
        let o = Overrides {
            config: Some(path),
            ..Default::default()
        };
        assert!(matches!(resolve(&o), Err(ConfigError::NoToken(_))));
    }
}
