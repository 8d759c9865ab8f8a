//! Writer locks with fencing (ARCHITECTURE.md §5): one backup or prune at a time per
//! `<storage>/<container>/<host>_<name>`.
//!
//! Acquire: `SET lock:<scope> <token> NX PX ttl`, then `INCR fence:<scope>` for the fencing token.
//! While the task runs, the daemon renews the lock every heartbeat with a compare-and-`PEXPIRE`;
//! a renewal that finds another token (or no lock) means the lock is lost: the task is cancelled
//! and fails, it never "finishes anyway". Before the manifest is written the engine calls the
//! commit guard ([`LockSet::check`]): the lock must still be ours and the fence counter must still
//! equal our token (a newer acquisition means someone else may be writing). Release is a Lua
//! compare-and-delete, so a lock that expired and was taken by another worker is never deleted by
//! the old holder.
//!
//! Policy: acquisition never waits. A backup or prune that finds the name locked fails at once
//! with error class `locked` (exit code 11), which the dispatcher retries later; so a prune never
//! runs while a backup of the same name writes, and it does not hold a slot waiting for one.

use freezer_fleet::scripts::compare_and_delete;
use freezer_fleet::Keys;
use redis::aio::ConnectionManager;
use redis::Script;

// A lock (and fence counter) that vanished because Redis restarted without persistence is taken
// back, so a Redis restart does not abort every running backup; a lock someone else took is not.
const RENEW: &str = r#"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local f = tonumber(redis.call('GET', KEYS[2]) or '0')
if f < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
return 1
"#;

const CHECK: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lost' end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 'fenced' end
return 'ok'
"#;

/// One held lock.
#[derive(Debug, Clone)]
pub struct HeldLock {
    /// The scope (`<storage>/<container>/<host>_<name>`).
    pub scope: String,
    key: String,
    fence_key: String,
    token: String,
    /// The fencing token of this acquisition.
    pub fence: u64,
}

/// The locks one task holds (one per storage), taken in sorted order so two tasks cannot
/// deadlock.
#[derive(Clone)]
pub struct LockSet {
    conn: ConnectionManager,
    ttl_ms: u64,
    /// The locks held.
    pub held: Vec<HeldLock>,
}

/// Why a lock could not be taken or kept.
#[derive(Debug)]
pub enum LockError {
    /// Another writer holds it.
    Busy(String),
    /// Redis failed.
    Redis(redis::RedisError),
}

impl LockSet {
    /// Takes the locks of `scopes` (sorted, deduplicated) or none: on a conflict the ones already
    /// taken are released.
    pub async fn acquire(
        conn: ConnectionManager,
        prefix: &str,
        mut scopes: Vec<String>,
        ttl_ms: u64,
    ) -> Result<LockSet, LockError> {
        scopes.sort();
        scopes.dedup();
        let mut set = LockSet {
            conn: conn.clone(),
            ttl_ms,
            held: Vec::new(),
        };
        for scope in scopes {
            let keys = Keys::new(prefix);
            let key = keys.lock(&scope);
            let fence_key = keys.fence(&scope);
            let token = super::random_token();
            let mut c = conn.clone();
            let got: Result<Option<String>, _> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut c)
                .await;
            match got {
                Ok(Some(_)) => {}
                Ok(None) => {
                    set.release().await;
                    return Err(LockError::Busy(scope));
                }
                Err(e) => {
                    set.release().await;
                    return Err(LockError::Redis(e));
                }
            }
            let fence: Result<u64, _> =
                redis::cmd("INCR").arg(&fence_key).query_async(&mut c).await;
            let fence = match fence {
                Ok(f) => f,
                Err(e) => {
                    let _ = compare_and_delete(&mut c, &key, &token).await;
                    set.release().await;
                    return Err(LockError::Redis(e));
                }
            };
            set.held.push(HeldLock {
                scope,
                key,
                fence_key,
                token,
                fence,
            });
        }
        Ok(set)
    }

    /// The newest fencing token among the locks (recorded in the manifest).
    pub fn fence(&self) -> Option<u64> {
        self.held.iter().map(|h| h.fence).max()
    }

    /// Renews every lock; `Ok(false)` when one is no longer ours.
    pub async fn renew(&self) -> redis::RedisResult<bool> {
        let mut c = self.conn.clone();
        for h in &self.held {
            let n: i64 = Script::new(RENEW)
                .key(&h.key)
                .key(&h.fence_key)
                .arg(&h.token)
                .arg(self.ttl_ms)
                .arg(h.fence)
                .invoke_async(&mut c)
                .await?;
            if n != 1 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The commit guard: every lock still ours and no newer fencing token handed out.
    pub async fn check(&self) -> Result<(), String> {
        let mut c = self.conn.clone();
        for h in &self.held {
            let r: String = Script::new(CHECK)
                .key(&h.key)
                .key(&h.fence_key)
                .arg(&h.token)
                .arg(h.fence)
                .invoke_async(&mut c)
                .await
                .map_err(|e| format!("cannot check the lock of {}: {e}", h.scope))?;
            match r.as_str() {
                "ok" => {}
                "lost" => return Err(format!("the lock of {} was lost", h.scope)),
                _ => {
                    return Err(format!(
                        "a newer fencing token than {} was handed out for {}",
                        h.fence, h.scope
                    ))
                }
            }
        }
        Ok(())
    }

    /// Releases every lock still ours (compare-and-delete).
    pub async fn release(&self) {
        let mut c = self.conn.clone();
        for h in &self.held {
            let _ = compare_and_delete(&mut c, &h.key, &h.token).await;
        }
    }
}
