//! Redis Lua scripts that more than one holder of a token runs: the workers' task leases and writer
//! locks, and the dispatchers' leader key. Each script is one atomic step on the server.

/// Deletes `KEYS[1]` only while it still holds `ARGV[1]` (a lease, lock or leadership token):
/// a holder never deletes what another one has taken since. Returns 1 when deleted.
pub const COMPARE_AND_DELETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Runs [`COMPARE_AND_DELETE`] on `key` with `token`; true when the key was ours and is gone.
pub async fn compare_and_delete<C>(conn: &mut C, key: &str, token: &str) -> redis::RedisResult<bool>
where
    C: redis::aio::ConnectionLike + Send,
{
    let deleted: i64 = redis::Script::new(COMPARE_AND_DELETE)
        .key(key)
        .arg(token)
        .invoke_async(conn)
        .await?;
    Ok(deleted == 1)
}
