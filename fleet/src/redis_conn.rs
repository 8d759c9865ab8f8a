//! The Redis connection both services use: one [`ConnectionManager`] that reconnects by itself,
//! with the same timeouts on both sides so an outage looks the same to the workers and the
//! dispatcher.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// A lazily connecting, self-reconnecting connection to `url` (no error until first used,
/// except for a URL Redis cannot read): 2 s to connect, 5 s per response, 2 retries at most 2 s
/// apart.
pub fn connect(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(client, config)
}
