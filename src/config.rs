//! The TOML configuration: `[cache]`, `[mount]`, `[[backoffice]]`,
//! `[[library]]`, `[[files]]`. Every default is documented here and in the
//! README; an unknown key, a missing key or an unreadable file is a one-line
//! error naming it.

use crate::fs::namespace::local_only::LocalOnly;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub mount: MountConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub backoffice: Vec<BackofficeConfig>,
    #[serde(default)]
    pub library: Vec<LibraryConfig>,
    #[serde(default)]
    pub files: Vec<FilesConfig>,
}

/// Local storage and cache behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Spool and content cache. Default `$CACHE_DIRECTORY` (set by systemd),
    /// else `/var/cache/bridgefs`.
    #[serde(default = "default_cache_dir")]
    pub dir: PathBuf,
    /// The pending-upload journal. Default `$STATE_DIRECTORY` (set by
    /// systemd), else `/var/lib/bridgefs`.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How long listings and attributes are trusted. Default `30s`.
    #[serde(default = "default_metadata_ttl", with = "humantime_serde_compat")]
    pub metadata_ttl: Duration,
    /// How long a name known to be absent stays absent. Default `5s`.
    #[serde(default = "default_negative_ttl", with = "humantime_serde_compat")]
    pub negative_ttl: Duration,
    /// Most metadata entries (listings, attributes, negative lookups) kept.
    /// Default 100000.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// Bytes of downloaded content kept in memory. Default 256 MiB.
    #[serde(default = "default_read_cache_bytes")]
    pub read_cache_bytes: u64,
    /// How long unmount/SIGTERM waits for pending uploads before journaling
    /// the rest. Default `30s`.
    #[serde(default = "default_shutdown_wait", with = "humantime_serde_compat")]
    pub shutdown_wait: Duration,
    /// Deadline of one remote call, retries included. Default `60s`.
    #[serde(default = "default_call_deadline", with = "humantime_serde_compat")]
    pub call_deadline: Duration,
}

/// How the mount itself behaves.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    /// Let users other than the mounting one see the tree. Default false.
    #[serde(default)]
    pub allow_other: bool,
    /// Owner shown on every entry. Default: the mounting user.
    pub uid: Option<u32>,
    /// Group shown on every entry. Default: the mounting user's group.
    pub gid: Option<u32>,
    /// Name patterns of files kept only on this machine (never uploaded).
    /// Default: editors' swap, backup and lock files (see
    /// [`crate::fs::namespace::local_only::DEFAULT_PATTERNS`]); `[]` turns
    /// the feature off.
    pub local_only: Option<Vec<String>>,
}

impl MountConfig {
    /// The compiled local-only patterns.
    pub fn local_only(&self) -> Result<LocalOnly, ConfigError> {
        match &self.local_only {
            None => Ok(LocalOnly::defaults()),
            Some(p) => LocalOnly::new(p).map_err(|e| ConfigError(format!("mount.local_only: {e}"))),
        }
    }
}

/// The Prometheus endpoint: off unless `listen` is set.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `127.0.0.1:9464` (any address: a non-loopback one is logged as a
    /// warning at start) or `unix:/run/bridgefs/NAME.sock`. Serves
    /// `GET /metrics`.
    pub listen: Option<String>,
}

/// A brokerage back office: `clients/` and `folder-templates/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackofficeConfig {
    /// Directory of the client trees. Default `clients`.
    #[serde(default = "default_clients_as")]
    pub mount_as: String,
    /// Directory of the shared folder tree. Default `folder-templates`.
    #[serde(default = "default_templates_as")]
    pub templates_as: String,
    pub base_url: String,
    /// File holding the pre-issued Bearer token; re-read once on 401.
    pub token_file: PathBuf,
    /// Client ids listed in `clients/` (others are reachable by path).
    #[serde(default)]
    pub clients: Vec<u64>,
    /// Download URL template; `{clientId}`, `{fileId}`, `{file}` are filled in.
    #[serde(default = "default_content_url")]
    pub content_url: String,
    /// `Accept-Language`. Default `en`.
    #[serde(default = "default_language")]
    pub language: String,
}

/// A business' file library: `library/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryConfig {
    /// Default `library`.
    #[serde(default = "default_library_as")]
    pub mount_as: String,
    /// E.g. `https://api.timetap.com/live`.
    pub base_url: String,
    /// Base of `/businessWeb/fileUploadS3.do`. Default: `base_url`.
    pub upload_base: Option<String>,
    pub api_key: String,
    /// File holding the private key (never sent; only its MD5 signature).
    pub private_key_file: PathBuf,
    pub business_id: u64,
    pub user_name: String,
    /// Download template of private files; `{fileLibraryUUID}` filled in.
    #[serde(default = "default_private_content_url")]
    pub private_content_url: String,
}

/// Files apps: `apps/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Default `apps`.
    #[serde(default = "default_apps_as")]
    pub mount_as: String,
    pub base_url: String,
    /// File holding the API key (Bearer).
    pub api_key_file: PathBuf,
    /// Apps shown, by uid or id, named exactly as written here.
    pub apps: Vec<String>,
    /// Hosts other than `base_url`'s that may be sent the API key when a
    /// file's `download_url` points there. Default none: such downloads go
    /// without credentials.
    #[serde(default)]
    pub key_hosts: Vec<String>,
    /// A `metadata` key where a file's modification time set by utimens
    /// (`touch -d`, `cp -p`, `rsync -a`) is also stored, so other machines
    /// see it: `"<rev>@<RFC 3339 time>"`, applied only while the file is at
    /// that revision. Default: none (times are kept on this machine only).
    #[serde(default)]
    pub mtime_metadata_key: Option<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: default_cache_dir(),
            state_dir: default_state_dir(),
            metadata_ttl: default_metadata_ttl(),
            negative_ttl: default_negative_ttl(),
            max_entries: default_max_entries(),
            read_cache_bytes: default_read_cache_bytes(),
            shutdown_wait: default_shutdown_wait(),
            call_deadline: default_call_deadline(),
        }
    }
}

/// systemd passes a unit's `CacheDirectory=`/`StateDirectory=` as
/// `$CACHE_DIRECTORY`/`$STATE_DIRECTORY` (colon-separated when several):
/// the first one is this instance's own, so instances never share a spool.
fn systemd_dir(var: &str) -> Option<PathBuf> {
    let value = std::env::var_os(var)?;
    let first = value.to_str()?.split(':').next()?.to_string();
    (!first.is_empty()).then(|| PathBuf::from(first))
}
fn default_cache_dir() -> PathBuf {
    systemd_dir("CACHE_DIRECTORY").unwrap_or_else(|| PathBuf::from("/var/cache/bridgefs"))
}
fn default_state_dir() -> PathBuf {
    systemd_dir("STATE_DIRECTORY").unwrap_or_else(|| PathBuf::from("/var/lib/bridgefs"))
}
fn default_metadata_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_max_entries() -> usize {
    100_000
}
fn default_read_cache_bytes() -> u64 {
    256 << 20
}
fn default_shutdown_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_call_deadline() -> Duration {
    Duration::from_secs(60)
}
fn default_clients_as() -> String {
    "clients".into()
}
fn default_templates_as() -> String {
    "folder-templates".into()
}
/// **Assumption** (API-CONTRACT §1): the download route of a client file.
pub const DEFAULT_BACKOFFICE_CONTENT_URL: &str =
    "/api/v2/clients/{clientId}/files/{fileId}/download";
fn default_content_url() -> String {
    DEFAULT_BACKOFFICE_CONTENT_URL.into()
}
fn default_language() -> String {
    "en".into()
}
fn default_library_as() -> String {
    "library".into()
}
/// **Assumption** (API-CONTRACT §2): the download route of a private library file.
pub const DEFAULT_LIBRARY_PRIVATE_CONTENT_URL: &str = "/files/{fileLibraryUUID}/content";
fn default_private_content_url() -> String {
    DEFAULT_LIBRARY_PRIVATE_CONTENT_URL.into()
}
fn default_apps_as() -> String {
    "apps".into()
}

/// Durations written like `30s`, `500ms`, `2m`.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {s:?}: {e}")))
    }
}

/// A configuration problem, phrased for one line of output.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads, parses and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        let config = Config::parse(&text, path)?;
        config.warn_if_secret_is_exposed(path);
        Ok(config)
    }

    /// The library's `api_key` sits in the config itself: a file others
    /// can read gives it away.
    fn warn_if_secret_is_exposed(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if !self.library.is_empty() && mode & 0o077 != 0 {
            tracing::warn!(config = %path.display(), mode = format!("{:o}", mode & 0o777), "the config holds library.api_key and is readable by others: chmod 600 it");
        }
    }

    /// Parses and checks configuration text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let mut msg = e.message().replace('\n', " ");
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            if line.is_some_and(|l| is_secret_line(text.lines().nth(l - 1).unwrap_or(""))) {
                msg = hide_quoted(&msg);
            }
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            ConfigError(format!("{}: {msg}{at}", origin.display()))
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.mount.local_only()?;
        let mut names = Vec::new();
        for b in &self.backoffice {
            check_url("backoffice.base_url", &b.base_url)?;
            check_readable("backoffice.token_file", &b.token_file)?;
            names.push(b.mount_as.clone());
            names.push(b.templates_as.clone());
        }
        for l in &self.library {
            check_url("library.base_url", &l.base_url)?;
            if let Some(u) = &l.upload_base {
                check_url("library.upload_base", u)?;
            }
            check_readable("library.private_key_file", &l.private_key_file)?;
            names.push(l.mount_as.clone());
        }
        for f in &self.files {
            check_url("files.base_url", &f.base_url)?;
            check_readable("files.api_key_file", &f.api_key_file)?;
            if f.apps.is_empty() {
                return Err(ConfigError(
                    "files.apps: list at least one app (uid or id)".into(),
                ));
            }
            names.push(f.mount_as.clone());
        }
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() || n.contains('/') || n.starts_with('.') {
                return Err(ConfigError(format!("mount_as {n:?}: must be a plain name")));
            }
            if names[..i].contains(n) {
                return Err(ConfigError(format!("mount_as {n:?} is used twice")));
            }
        }
        if let Some(l) = &self.metrics.listen {
            check_listen(l)?;
        }
        if names.is_empty() {
            return Err(ConfigError(
                "no backend configured: add a [[backoffice]], [[library]] or [[files]] table"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A line setting a credential (`api_key = …`, `token = …`): its value
/// never appears in an error.
fn is_secret_line(line: &str) -> bool {
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    !key.ends_with("_file")
        && ["key", "token", "secret", "password"]
            .iter()
            .any(|s| key.contains(s))
}

/// Replaces every `quoted` value of a parser message.
fn hide_quoted(msg: &str) -> String {
    msg.split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "(value hidden)" } else { part })
        .collect::<Vec<_>>()
        .join("`")
}

/// A URL as errors may show it: without `user:password@`.
fn without_userinfo(value: &str) -> String {
    match value.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let hidden = if host.len() < authority.len() {
                "(credentials hidden)@"
            } else {
                ""
            };
            format!("{scheme}://{hidden}{host}{path}")
        }
        None => value.to_string(),
    }
}

fn check_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(ConfigError(format!(
            "{key}: {:?} is not an http(s) URL",
            without_userinfo(value)
        ))),
    }
}

fn check_listen(value: &str) -> Result<(), ConfigError> {
    let ok = match value.strip_prefix("unix:") {
        Some(path) => Path::new(path).is_absolute(),
        None => value.parse::<std::net::SocketAddr>().is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "metrics.listen: {value:?} is neither ADDRESS:PORT nor unix:/ABSOLUTE/PATH"
        )))
    }
}

fn check_readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::read(path)
        .map(|_| ())
        .map_err(|e| ConfigError(format!("{key}: cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_one_line_error() {
        let err = Config::parse("[cache]\nbogus = 1\n", Path::new("x.toml")).unwrap_err();
        assert!(err.0.contains("bogus"), "{}", err.0);
        assert!(!err.0.contains('\n'));
    }

    #[test]
    fn missing_key_named() {
        let err = Config::parse("[[files]]\napps=[\"a\"]\n", Path::new("x.toml")).unwrap_err();
        assert!(err.0.contains("base_url"), "{}", err.0);
    }

    #[test]
    fn errors_never_echo_a_secret_or_url_credentials() {
        let text = "[[library]]\nbase_url = \"http://x/\"\napi_key = 123456789\nprivate_key_file = \"/k\"\nbusiness_id = 1\nuser_name = \"u\"\n";
        let err = Config::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("123456789") && err.contains("line 3"),
            "{err}"
        );
        let err = check_url("library.base_url", "ftp://bob:hunter2@host/x")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("hunter2") && !err.contains("bob") && err.contains("host/x"),
            "{err}"
        );
    }

    #[test]
    fn durations_parse() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "k\n").unwrap();
        let text = format!(
            "[cache]\nmetadata_ttl = \"2s\"\n[[files]]\nbase_url = \"http://127.0.0.1:1/files\"\napi_key_file = {:?}\napps = [\"handbook\"]\n",
            key
        );
        let c = Config::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(c.cache.metadata_ttl, Duration::from_secs(2));
        assert_eq!(c.files[0].mount_as, "apps");
    }
}
