//! Task state in Redis (ARCHITECTURE.md §4, §5): what makes execution exactly once per task id on top of
//! at-least-once delivery.
//!
//! Keys (under the configured prefix, `freezer:` by default):
//! - `task:<id>` (hash, TTL `record_ttl_seconds`): `state` (`running`, `succeeded`, `failed`,
//!   `expired`), `node`, `queue` (where to re-queue it), `body` (the task message, while running),
//!   `runs` (how many claims), `event` (the final event, JSON: the recorded result).
//! - `task:<id>:lease` (string `node:token`, PX `lease_ttl_ms`): the running worker's lease,
//!   renewed every heartbeat, kept until the final event is published. A task whose record says
//!   `running` but has no lease was left by a dead worker; a finished one whose id is still in
//!   `running` without a lease may not have had its final event published.
//! - `running` (set of task ids): tasks that have not yet published their final event, scanned
//!   by every worker's reaper.
//! - `task:<id>:reap` (PX): one reaper re-queues a given orphan at a time.
//!
//! Claiming, finishing, renewing and abandoning are Lua scripts, so each is one atomic step.

use freezer_fleet::scripts::compare_and_delete;
use freezer_fleet::Keys;
use redis::aio::ConnectionManager;
use redis::Script;

/// Result of trying to claim a task.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// This worker now runs the task (the `runs`-th claim; more than 1 means a re-run after a
    /// worker died or abandoned it).
    Claimed {
        /// Number of claims so far, this one included.
        runs: u64,
    },
    /// The task already finished: the recorded final event (JSON) is to be published again.
    Finished {
        /// The recorded event.
        event: String,
    },
    /// Another worker (or this one) holds a live lease on it: do not start it twice.
    Busy {
        /// The node holding it.
        node: String,
    },
}

const CLAIM: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'running' and state ~= 'queued' then
  return {'finished', redis.call('HGET', KEYS[1], 'event') or ''}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'busy', redis.call('GET', KEYS[2])}
end
redis.call('HSET', KEYS[1], 'state', 'running', 'node', ARGV[1], 'queue', ARGV[3], 'body', ARGV[4])
local runs = redis.call('HINCRBY', KEYS[1], 'runs', 1)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[5])
redis.call('SADD', KEYS[3], ARGV[7])
return {'claimed', tostring(runs)}
"#;

// Our lease, or no lease at all while the record is still ours or gone (Redis restarted without
// persistence, or our lease ran out during an outage and nobody claimed the task since). The
// lease is kept (renewed by the keeper) until the final event is confirmed published
// ([`TaskStore::reported_by`]), so no reaper publishes it a second time meanwhile; if this
// worker dies first, the lease runs out and a reaper publishes the recorded event.
const FINISH: &str = r#"
local v = redis.call('GET', KEYS[2])
if v ~= ARGV[1] then
  if v then return 0 end
  local state = redis.call('HGET', KEYS[1], 'state')
  local node = redis.call('HGET', KEYS[1], 'node')
  if state and state ~= 'running' then return 0 end
  if node and node ~= ARGV[5] then return 0 end
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'event', ARGV[3], 'node', ARGV[5])
redis.call('HDEL', KEYS[1], 'body')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[6])
return 1
"#;

// A lease that vanished (Redis restarted without persistence) is taken back: nobody else can
// have claimed the task in between without finding it, since its message was acknowledged.
const RENEW: &str = r#"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// The Redis task-state store of one worker.
#[derive(Clone)]
pub struct TaskStore {
    conn: ConnectionManager,
    keys: Keys,
    node: String,
    lease_ms: u64,
    record_ttl: u64,
}

/// A claim this worker holds: the lease value that proves it.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Task id.
    pub task_id: String,
    /// `node:token`, compared before every write.
    pub value: String,
}

impl TaskStore {
    /// A store over `conn` for `node`, keys under `prefix`.
    pub fn new(
        conn: ConnectionManager,
        prefix: &str,
        node: &str,
        lease_ms: u64,
        record_ttl: u64,
    ) -> Self {
        TaskStore {
            conn,
            keys: Keys::new(prefix),
            node: node.to_string(),
            lease_ms,
            record_ttl,
        }
    }

    /// The Redis connection (shared with locks and heartbeats).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The Redis key names under this worker's prefix.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn task_key(&self, id: &str) -> String {
        self.keys.task(id)
    }
    fn lease_key(&self, id: &str) -> String {
        self.keys.task_lease(id)
    }
    /// The set of tasks not yet reported final.
    pub fn running_key(&self) -> String {
        self.keys.running()
    }

    /// Claims task `id` (message `body`, consumed from `queue`) for this worker.
    pub async fn claim(
        &self,
        id: &str,
        queue: &str,
        body: &[u8],
    ) -> redis::RedisResult<(Claim, Lease)> {
        let token = super::random_token();
        let lease = Lease {
            task_id: id.to_string(),
            value: format!("{}:{token}", self.node),
        };
        let reply: Vec<String> = Script::new(CLAIM)
            .key(self.task_key(id))
            .key(self.lease_key(id))
            .key(self.running_key())
            .arg(&self.node)
            .arg(&token)
            .arg(queue)
            .arg(body)
            .arg(self.lease_ms)
            .arg(self.record_ttl)
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let claim = match reply.first().map(String::as_str) {
            Some("claimed") => Claim::Claimed {
                runs: reply.get(1).and_then(|r| r.parse().ok()).unwrap_or(1),
            },
            Some("finished") => Claim::Finished {
                event: reply.get(1).cloned().unwrap_or_default(),
            },
            _ => Claim::Busy {
                node: reply
                    .get(1)
                    .and_then(|v| v.split(':').next())
                    .unwrap_or_default()
                    .to_string(),
            },
        };
        Ok((claim, lease))
    }

    /// Records the final state and event of a task this worker holds; false when the lease was
    /// lost (the record is then left to whoever holds it now).
    pub async fn finish(
        &self,
        lease: &Lease,
        state: &str,
        event: &[u8],
    ) -> redis::RedisResult<bool> {
        let done: i64 = Script::new(FINISH)
            .key(self.task_key(&lease.task_id))
            .key(self.lease_key(&lease.task_id))
            .arg(&lease.value)
            .arg(state)
            .arg(event)
            .arg(self.record_ttl)
            .arg(&self.node)
            .arg(self.lease_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(done == 1)
    }

    /// The holder of `lease` published the task's final event: the task leaves the set of
    /// unreported tasks and the lease goes.
    pub async fn reported_by(&self, lease: &Lease) -> redis::RedisResult<()> {
        self.reported(&lease.task_id).await?;
        self.release(lease).await
    }

    /// Removes a task from the set of unreported tasks once its final event is published.
    pub async fn reported(&self, id: &str) -> redis::RedisResult<()> {
        redis::cmd("SREM")
            .arg(self.running_key())
            .arg(id)
            .query_async::<()>(&mut self.conn.clone())
            .await
    }

    /// Renews a lease; false when it is no longer this worker's.
    pub async fn renew(&self, lease: &Lease) -> redis::RedisResult<bool> {
        let n: i64 = Script::new(RENEW)
            .key(self.lease_key(&lease.task_id))
            .arg(&lease.value)
            .arg(self.lease_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Gives a task up without finishing it (shutdown): its lease goes, so it can be claimed
    /// again at once by whoever receives it next.
    pub async fn release(&self, lease: &Lease) -> redis::RedisResult<()> {
        compare_and_delete(
            &mut self.conn.clone(),
            &self.lease_key(&lease.task_id),
            &lease.value,
        )
        .await
        .map(|_| ())
    }

    /// One pass of the reaper: tasks in the running set without a lease were left by a worker
    /// that died (or abandoned them). Returns, for each one this worker won the right to handle,
    /// either its recorded final event (publish it, then [`Self::reported`]) or its queue and body
    /// (re-queue it).
    pub async fn orphans(&self) -> redis::RedisResult<Vec<Orphan>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.running_key())
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::new();
        for id in ids {
            let exists: bool = redis::cmd("EXISTS")
                .arg(self.lease_key(&id))
                .query_async(&mut conn)
                .await?;
            if exists {
                continue;
            }
            // One reaper per orphan per lease period.
            let won: Option<String> = redis::cmd("SET")
                .arg(self.keys.task_reap(&id))
                .arg(&self.node)
                .arg("NX")
                .arg("PX")
                .arg(self.lease_ms * 2)
                .query_async(&mut conn)
                .await?;
            if won.is_none() {
                continue;
            }
            let fields: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.task_key(&id))
                .arg("state")
                .arg("event")
                .arg("queue")
                .arg("body")
                .query_async(&mut conn)
                .await?;
            let get = |i: usize| fields.get(i).cloned().flatten();
            match (get(0).as_deref(), get(1), get(2), get(3)) {
                (Some("running"), _, Some(queue), Some(body)) => out.push(Orphan::Requeue {
                    id,
                    queue,
                    body: body.into_bytes(),
                }),
                (Some(_), Some(event), _, _) => out.push(Orphan::Report { id, event }),
                _ => {
                    // The record expired or is unusable: nothing can be done for it.
                    self.reported(&id).await?;
                }
            }
        }
        Ok(out)
    }
}

/// A task left without a live worker.
#[derive(Debug)]
pub enum Orphan {
    /// It finished but its final event may not have been published.
    Report {
        /// Task id.
        id: String,
        /// The recorded final event.
        event: String,
    },
    /// It was running: publish it to its queue again.
    Requeue {
        /// Task id.
        id: String,
        /// The queue it came from.
        queue: String,
        /// The task message.
        body: Vec<u8>,
    },
}
