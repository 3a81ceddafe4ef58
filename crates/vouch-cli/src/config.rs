//! Settings: defaults ← TOML file ← `VOUCH_*` variables ← flags. Clap already
//! merges variables and flags; the file fills in only what neither gave.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vouch_store::DatabaseConfig;

use crate::cli::DbArgs;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub mailbox: Option<PathBuf>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<FileConfig, String> {
        let Some(path) = path else { return Ok(FileConfig::default()) };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn database(&self, args: &DbArgs) -> Result<DatabaseConfig, String> {
        let url = args.database_url.clone().or_else(|| self.database_url.clone());
        let dir = args.data.clone().or_else(|| self.data.clone()).unwrap_or_else(|| PathBuf::from("vouch-data"));
        DatabaseConfig::from_parts(url.as_deref().filter(|u| !u.is_empty()), dir)
    }
}

/// `--public-url` or `http://` + the listen address, checked to be a usable base.
pub fn public_url(given: Option<&str>, listen: SocketAddr) -> Result<url::Url, String> {
    let raw = given.map(str::to_owned).unwrap_or_else(|| format!("http://{listen}"));
    let url = url::Url::parse(&raw).map_err(|e| format!("--public-url `{raw}`: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("--public-url `{raw}` must be an http(s) URL with a host"));
    }
    Ok(url)
}
