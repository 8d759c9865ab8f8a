//! The dispatcher's configuration file (`/etc/freezer/dispatcher.toml`, or `--config F`):
//!
//! ```toml
//! [dispatcher]
//! id = "disp1"                       # this instance (default: the host name)
//! amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! redis_url = "redis://127.0.0.1:6379/"
//! key_prefix = "freezer:"            # Redis keys, shared with the workers
//! jobs_dir = "/etc/freezer/jobs.d"   # job files (*.toml), watched
//! metrics_addr = "127.0.0.1:9465"
//! leader_lease_ms = 10000            # a standby takes over within this
//! history_len = 100                  # runs kept per job
//! events_queue = "freezer.dispatcher"
//! ```
//!
//! Unknown keys are refused with the file named, as in the worker's file.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    /// The `[dispatcher]` section.
    pub dispatcher: DispatcherSection,
}

/// Settings of one dispatcher instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherSection {
    /// This instance's name (leader lease holder, logs); default: the host name.
    #[serde(default = "default_id")]
    pub id: String,
    /// RabbitMQ.
    #[serde(default = "default_amqp_url")]
    pub amqp_url: String,
    /// Redis.
    #[serde(default = "default_redis_url")]
    pub redis_url: String,
    /// Prefix of every Redis key (the workers' `key_prefix`).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Directory of job files.
    #[serde(default = "default_jobs_dir")]
    pub jobs_dir: PathBuf,
    /// `/metrics` listen address; none: no metrics endpoint.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// Leader lease TTL in milliseconds; renewed every third of it.
    #[serde(default = "default_lease_ms")]
    pub leader_lease_ms: u64,
    /// Finished runs kept per job in Redis.
    #[serde(default = "default_history_len")]
    pub history_len: usize,
    /// The durable queue the dispatchers of one deployment read events from.
    #[serde(default = "default_events_queue")]
    pub events_queue: String,
}

impl DispatcherSection {
    /// The Redis key names under [`DispatcherSection::key_prefix`].
    pub fn keys(&self) -> freezer_fleet::Keys {
        freezer_fleet::Keys::new(self.key_prefix.clone())
    }
}

impl Default for DispatcherSection {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

fn default_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "dispatcher".into())
}
fn default_amqp_url() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".into()
}
fn default_redis_url() -> String {
    "redis://127.0.0.1:6379/".into()
}
fn default_key_prefix() -> String {
    freezer_contracts::KEY_PREFIX.into()
}
fn default_jobs_dir() -> PathBuf {
    "/etc/freezer/jobs.d".into()
}
fn default_lease_ms() -> u64 {
    10_000
}
fn default_history_len() -> usize {
    100
}
fn default_events_queue() -> String {
    "freezer.dispatcher".into()
}

impl DispatcherConfig {
    /// Reads `path`; a missing default file gives the defaults, a missing named file is an error.
    pub fn load(path: Option<&Path>) -> crate::Result<DispatcherConfig> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("/etc/freezer/dispatcher.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| crate::Error::setting_from(path.display().to_string(), e)),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(DispatcherConfig {
                    dispatcher: DispatcherSection::default(),
                })
            }
            Err(e) => Err(crate::Error::setting_from(path.display().to_string(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: DispatcherConfig = toml::from_str("[dispatcher]\nid = \"d1\"\n").unwrap();
        assert_eq!(c.dispatcher.id, "d1");
        assert_eq!(c.dispatcher.leader_lease_ms, 10_000);
        let e = toml::from_str::<DispatcherConfig>("[dispatcher]\nleader_lease = 5\n").unwrap_err();
        assert!(e.to_string().contains("leader_lease"), "{e}");
    }
}
