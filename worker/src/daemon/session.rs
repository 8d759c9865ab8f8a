//! Session barriers (ARCHITECTURE.md §5 "Sessions"): the member tasks of one session step (same session
//! id and tag, one task per member node) wait for each other and start together, or act on the
//! session policy when the hold-off passes with members missing.
//!
//! A member joins only once it holds an execution slot, so it can start the moment the barrier
//! opens. The barrier opens when every member has joined: the member whose join completes the set
//! fixes a start instant [`START_LEAD`] ahead (Redis clock), and every member, polling every
//! [`POLL_INTERVAL`], learns how far away that instant is and sleeps until it. The members thus
//! start at one shared instant, not "when each one notices": the spread is the spread of the
//! replies' network latency (milliseconds), not of the polling. If the hold-off, counted from the
//! first join, passes with members missing: policy `abort` marks the session aborted and every
//! member fails its task as transient without running anything (a member arriving later fails the
//! same way); policy `proceed` starts the members present, and a member arriving later fails,
//! naming the session that started without it. A task whose node is not a member fails at once
//! (permanent). All times come from the Redis server's clock (`TIME`), so the workers' clocks need
//! not agree.
//!
//! Failures at the barrier (event `failed`, nothing run, no backup written):
//! - aborted: `session <id> tag <tag> aborted: node(s) <missing> did not join within <n> s`,
//!   class `transient`, exit code 1 (also for a member arriving after the abort);
//! - too late under `proceed`: `session <id> tag <tag> started without node <node>: ...`,
//!   `transient`, exit code 1;
//! - not a member: `node <node> is not a member of session <id> tag <tag> ...`, `permanent`,
//!   exit code 2 (decided before the task waits for anything);
//! - the tasks disagree on the members: `permanent`, exit code 2;
//! - Redis unreachable for the hold-off plus 30 s: `transient`, exit code 1.
//!
//! A member waits holding its slot and with its task lease renewed (it is a running task). When
//! its worker stops, it leaves a barrier that has not opened and its task goes back to its queue;
//! if the barrier opened meanwhile with it present, it starts with the others. Limits: a member
//! whose worker is killed keeps its join, so the barrier may open without it; its task, re-run
//! after the lease expires, then finds the session started with it and starts at once (late). Two
//! sessions whose members hold each other's last slots wait for each other until a hold-off
//! passes.
//!
//! # Redis keys (read by `freezer-dispatcher sessions` and for the session result)
//!
//! Keys are under the worker's `key_prefix` (`freezer:` by default), named by
//! [`freezer_fleet::Keys::session`] and [`freezer_fleet::Keys::sessions`]: with the default prefix
//! the key is exactly [`freezer_contracts::session_key`].
//!
//! `<prefix>session:<id>:<tag>` (hash, TTL `record_ttl_seconds`, renewed at every join and
//! result). Times are Unix milliseconds of the Redis server's clock; node lists are node names
//! joined with `,`, sorted, empty when none.
//! - `id`, `tag`: the session id and tag.
//! - `members`: the expected members, as the first member to join listed them. A later task whose
//!   member list differs fails (permanent): the tasks of one session must agree.
//! - `policy`: `abort` or `proceed`; `hold_off_seconds`: the hold-off (both as the first joiner's
//!   task says).
//! - `state`: `waiting` (members are joining), `started` (the barrier opened; the members present
//!   run) or `aborted` (the hold-off passed with members missing and policy `abort`: nothing runs).
//!   Once `started` or `aborted` it never changes.
//! - `created_at`: the first join; `deadline`: `created_at` + hold-off.
//! - `joined:<node>`: when `<node>` joined (removed when it leaves a waiting barrier because its
//!   worker stops).
//! - `task:<node>`: the task id of `<node>`'s task.
//! - `present`, `missing`: members that have / have not joined; kept current while `waiting`,
//!   frozen when the state is decided (for `started`, `present` are the members that run).
//! - `started_at`: the instant the members start (set when the state becomes `started`, a few
//!   hundred ms after the barrier opened). `aborted_at`: when it was aborted.
//! - `begun:<node>`: when `<node>` actually left the barrier and started its task (its own clock;
//!   the spread of these values is the start spread).
//! - `result:<node>`: the final result of `<node>`'s task: `succeeded:<exit code>`,
//!   `failed:<exit code>` or `expired` (written for every member whose task finishes, also when it
//!   failed at the barrier or expired before joining, which may create the hash before any join:
//!   a hash without `state` has no joins yet).
//! - `result`: the session's result, `succeeded` only if every member succeeded, else `failed`.
//!   Set when the session is aborted, or, once `started`, when every present member has a result
//!   (`failed` when a member was missing). `finished_at`: when `result` was set.
//!
//! `<prefix>sessions` (sorted set): one entry `<id>/<tag>` per session, scored by its first join
//! (Unix ms), for listing; entries older than `record_ttl_seconds` are trimmed at each new session.
//!
//! Every change is one Lua script ([`redis::Script`]), so a join, the decision and a result are
//! each atomic.

use super::{Running, Shared};
use crate::error::Error;
use freezer_contracts::{EventStatus, Session, SessionPolicy, TaskEnvelope};
use redis::Script;
use std::sync::atomic::Ordering;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a member at the barrier looks at its state.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How far ahead of the opening of the barrier the members start: long enough for every member to
/// see the opening (one poll interval plus scheduling delays on a loaded machine) before the start
/// instant, so that they all start at that instant.
pub const START_LEAD: Duration = Duration::from_millis(300);

/// How long a member keeps trying through a Redis outage beyond the hold-off before failing.
const REDIS_PATIENCE: Duration = Duration::from_secs(30);

/// Shared Lua: the clock, list helpers, the tally of who joined and the decision.
const PRELUDE: &str = r#"
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function ms(x) return string.format('%.0f', x) end
local function split(s)
  local out = {}
  if not s then return out end
  for p in string.gmatch(s, '[^,]+') do table.insert(out, p) end
  return out
end
local function tally(write)
  local present, missing = {}, {}
  for _, m in ipairs(split(redis.call('HGET', key, 'members'))) do
    if redis.call('HEXISTS', key, 'joined:' .. m) == 1 then
      table.insert(present, m)
    else
      table.insert(missing, m)
    end
  end
  if write then
    redis.call('HSET', key, 'present', table.concat(present, ','), 'missing',
      table.concat(missing, ','))
  end
  return present, missing
end
-- A poll that changes nothing writes nothing.
local function decide(lead, joining)
  if redis.call('HGET', key, 'state') ~= 'waiting' then return end
  local present, missing = tally(joining)
  local due = now >= tonumber(redis.call('HGET', key, 'deadline'))
  if not joining and (#missing == 0 or due) then tally(true) end
  if #missing == 0 then
    redis.call('HSET', key, 'state', 'started', 'started_at', ms(now + lead))
  elseif due then
    if redis.call('HGET', key, 'policy') == 'proceed' and #present > 0 then
      redis.call('HSET', key, 'state', 'started', 'started_at', ms(now + lead))
    else
      redis.call('HSET', key, 'state', 'aborted', 'aborted_at', ms(now), 'result', 'failed',
        'finished_at', ms(now))
    end
  end
end
local function status(node)
  local f = redis.call('HMGET', key, 'state', 'started_at', 'deadline', 'present', 'missing', 'members')
  local start_in, wait_left = 0, 0
  if f[2] then start_in = tonumber(f[2]) - now end
  if f[3] then wait_left = tonumber(f[3]) - now end
  return {f[1] or '', ms(start_in), ms(wait_left), f[4] or '', f[5] or '', f[6] or '',
    tostring(redis.call('HEXISTS', key, 'joined:' .. node))}
end
"#;

/// KEYS: hash, index. ARGV: node, task id, members, hold-off ms, policy, ttl s, index entry,
/// lead ms, id, tag, hold-off s.
const JOIN: &str = r#"
local node, ttl = ARGV[1], tonumber(ARGV[6])
if not redis.call('HGET', key, 'state') then
  redis.call('HSET', key, 'id', ARGV[9], 'tag', ARGV[10], 'members', ARGV[3], 'policy', ARGV[5],
    'hold_off_seconds', ARGV[11], 'state', 'waiting', 'created_at', ms(now),
    'deadline', ms(now + tonumber(ARGV[4])))
  redis.call('ZADD', KEYS[2], ms(now), ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms(now - ttl * 1000))
elseif redis.call('HGET', key, 'members') ~= ARGV[3] then
  return {'mismatch', '0', '0', '', '', redis.call('HGET', key, 'members'), '0'}
end
if redis.call('HGET', key, 'state') == 'waiting'
    and now <= tonumber(redis.call('HGET', key, 'deadline')) then
  redis.call('HSETNX', key, 'joined:' .. node, ms(now))
  redis.call('HSET', key, 'task:' .. node, ARGV[2])
end
decide(tonumber(ARGV[8]), true)
redis.call('EXPIRE', key, ttl)
return status(node)
"#;

/// KEYS: hash. ARGV: node, lead ms.
const POLL: &str = r#"
decide(tonumber(ARGV[2]), false)
return status(ARGV[1])
"#;

/// KEYS: hash. ARGV: node.
const LEAVE: &str = r#"
if redis.call('HGET', key, 'state') ~= 'waiting' then return 0 end
redis.call('HDEL', key, 'joined:' .. ARGV[1], 'task:' .. ARGV[1])
tally(true)
return 1
"#;

/// KEYS: hash. ARGV: node, result value, ttl s.
const RESULT: &str = r#"
redis.call('HSET', key, 'result:' .. ARGV[1], ARGV[2])
if redis.call('HGET', key, 'state') == 'started' and not redis.call('HGET', key, 'result') then
  local done, ok = true, (redis.call('HGET', key, 'missing') or '') == ''
  for _, m in ipairs(split(redis.call('HGET', key, 'present'))) do
    local r = redis.call('HGET', key, 'result:' .. m)
    if not r then
      done = false
    elseif string.sub(r, 1, 10) ~= 'succeeded:' then
      ok = false
    end
  end
  if done then
    local result = 'failed'
    if ok then result = 'succeeded' end
    redis.call('HSET', key, 'result', result, 'finished_at', ms(now))
  end
end
redis.call('EXPIRE', key, ARGV[3])
return 1
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

static JOIN_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(JOIN));
static POLL_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(POLL));
static LEAVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(LEAVE));
static RESULT_SCRIPT: LazyLock<Script> = LazyLock::new(|| script(RESULT));

/// The stored name of a policy.
fn policy_name(p: SessionPolicy) -> &'static str {
    match p {
        SessionPolicy::Abort => "abort",
        SessionPolicy::Proceed => "proceed",
    }
}

/// The barrier as one member saw it, from a join or a poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// `waiting`, `started`, `aborted`, `mismatch` (the stored members differ from the task's) or
    /// empty (no record: it expired or was deleted).
    pub state: String,
    /// Until the members start (negative once they did), when `started`.
    pub start_in_ms: i64,
    /// Until the hold-off passes (negative once it did).
    pub deadline_in_ms: i64,
    /// Members that joined (or run, once started).
    pub present: Vec<String>,
    /// Members that did not join.
    pub missing: Vec<String>,
    /// The members the session was opened with.
    pub members: Vec<String>,
    /// Whether this member's join is recorded.
    pub joined: bool,
}

impl Status {
    fn from_reply(reply: Vec<String>) -> Status {
        let list = |i: usize| -> Vec<String> {
            reply
                .get(i)
                .map(|s| {
                    s.split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let int = |i: usize| reply.get(i).and_then(|s| s.parse().ok()).unwrap_or(0);
        Status {
            state: reply.first().cloned().unwrap_or_default(),
            start_in_ms: int(1),
            deadline_in_ms: int(2),
            present: list(3),
            missing: list(4),
            members: list(5),
            joined: reply.get(6).is_some_and(|j| j == "1"),
        }
    }
}

/// One member's handle on the barrier of its session.
pub struct Barrier {
    conn: redis::aio::ConnectionManager,
    key: String,
    index: String,
    node: String,
    ttl: u64,
    session: Session,
    members: String,
}

impl Barrier {
    /// The barrier of `session` for this worker's node.
    pub fn new(shared: &Shared, session: &Session) -> Barrier {
        let keys = shared.store.keys();
        let mut members = session.members.clone();
        members.sort();
        Barrier {
            conn: shared.store.conn(),
            key: keys.session(&session.id, &session.tag),
            index: keys.sessions(),
            node: shared.daemon.node.clone(),
            ttl: shared.daemon.record_ttl_seconds.max(1),
            session: session.clone(),
            members: members.join(","),
        }
    }

    /// Joins the barrier (creating it at the first join) with task `task_id`, and applies the
    /// decision if it is due.
    pub async fn join(&self, task_id: &str) -> redis::RedisResult<Status> {
        let hold_off_ms = self.session.hold_off_seconds.saturating_mul(1000);
        let reply: Vec<String> = JOIN_SCRIPT
            .key(&self.key)
            .key(&self.index)
            .arg(&self.node)
            .arg(task_id)
            .arg(&self.members)
            .arg(hold_off_ms)
            .arg(policy_name(self.session.policy))
            .arg(self.ttl)
            .arg(format!("{}/{}", self.session.id, self.session.tag))
            .arg(START_LEAD.as_millis() as u64)
            .arg(&self.session.id)
            .arg(&self.session.tag)
            .arg(self.session.hold_off_seconds)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Status::from_reply(reply))
    }

    /// Looks at the barrier, applying the decision if it is due.
    pub async fn poll(&self) -> redis::RedisResult<Status> {
        let reply: Vec<String> = POLL_SCRIPT
            .key(&self.key)
            .arg(&self.node)
            .arg(START_LEAD.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Status::from_reply(reply))
    }

    /// Leaves a barrier that has not opened yet (the worker stops); true if the join was removed.
    pub async fn leave(&self) -> redis::RedisResult<bool> {
        let n: i64 = LEAVE_SCRIPT
            .key(&self.key)
            .arg(&self.node)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Records when this member actually started (`begun:<node>`, its clock, Unix ms).
    pub async fn begun(&self, at_ms: u64) -> redis::RedisResult<()> {
        redis::cmd("HSET")
            .arg(&self.key)
            .arg(format!("begun:{}", self.node))
            .arg(at_ms)
            .query_async(&mut self.conn.clone())
            .await
    }
}

/// The stored form of a member's final result (`result:<node>`), if the status is final.
pub fn result_value(status: &EventStatus) -> Option<String> {
    match status {
        EventStatus::Succeeded { exit_code, .. } => Some(format!("succeeded:{exit_code}")),
        EventStatus::Failed { exit_code, .. } => Some(format!("failed:{exit_code}")),
        EventStatus::Expired { .. } => Some("expired".into()),
        _ => None,
    }
}

/// Records the final result of `task` in its session's hash, if it is a session task of a member
/// (best effort: the task's own record is already written; a failure is logged).
pub async fn record_result(shared: &Shared, task: &TaskEnvelope, status: &EventStatus) {
    let Some(session) = &task.session else { return };
    let node = &shared.daemon.node;
    if !session.members.contains(node) {
        return;
    }
    let Some(value) = result_value(status) else {
        return;
    };
    let key = shared.store.keys().session(&session.id, &session.tag);
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=5 {
        let r: redis::RedisResult<i64> = RESULT_SCRIPT
            .key(&key)
            .arg(node)
            .arg(&value)
            .arg(shared.daemon.record_ttl_seconds.max(1))
            .invoke_async(&mut shared.store.conn())
            .await;
        match r {
            Ok(_) => return,
            Err(e) if attempt == 5 => {
                tracing::warn!(error = %e, session = %session.id, tag = %session.tag, "cannot record the result in the session")
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// How a member's wait at the barrier ended.
#[derive(Debug)]
pub enum Gate {
    /// The barrier opened with this member present, and the start instant has come: run now.
    Go,
    /// The task fails with this status without running.
    Fail(EventStatus),
    /// The worker is stopping: the member left the barrier; give the task back to its queue.
    Stop,
    /// The task's lease went to another worker: leave the task to it.
    Lost,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn fail(error: Error) -> Gate {
    Gate::Fail(super::executor::failed_status(&error))
}

/// Fails a task whose node is not among the members of its session (permanent: the task was
/// addressed to the wrong node).
pub fn check_member(node: &str, session: &Session) -> Option<EventStatus> {
    if session.members.iter().any(|m| m == node) {
        return None;
    }
    let e = Error::usage(format!(
        "node {node} is not a member of session {} tag {} (members: {}): the task was sent to \
         the wrong node",
        session.id,
        session.tag,
        session.members.join(", ")
    ));
    Some(super::executor::failed_status(&e))
}

/// Waits at the barrier of `session` for `task` (which holds an execution slot), until the
/// members start together, the session fails for this member, the worker stops or the lease is
/// lost. Observes `freezer_session_wait_seconds` and logs the wait.
pub async fn gather(
    shared: &Shared,
    task: &TaskEnvelope,
    session: &Session,
    running: &Running,
) -> Gate {
    let barrier = Barrier::new(shared, session);
    let task_id = task.task_id.to_string();
    let node = &shared.daemon.node;
    let (id, tag) = (&session.id, &session.tag);
    let clock = Instant::now();
    let give_up = Duration::from_secs(session.hold_off_seconds) + REDIS_PATIENCE;
    let mut joined = false;
    let observe = |what: &str, status: &Status| {
        let waited = clock.elapsed().as_secs_f64();
        shared.metrics.session_wait.observe(waited);
        tracing::info!(
            session = %id, tag = %tag, wait_seconds = waited,
            present = %status.present.join(","), missing = %status.missing.join(","),
            "session barrier: {what}"
        );
    };
    loop {
        let reply = match joined {
            true => barrier.poll().await,
            false => barrier.join(&task_id).await,
        };
        match reply {
            Ok(status) => match status.state.as_str() {
                "waiting" if status.joined => {
                    if !joined {
                        tracing::info!(
                            session = %id, tag = %tag,
                            present = %status.present.join(","), missing = %status.missing.join(","),
                            hold_off_left_ms = status.deadline_in_ms,
                            "joined the session barrier; waiting for the other members"
                        );
                    }
                    joined = true;
                }
                "started" if status.joined => {
                    if status.start_in_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(status.start_in_ms as u64)).await;
                    }
                    let at = unix_ms();
                    let b = Barrier::new(shared, session);
                    tokio::spawn(async move {
                        if let Err(e) = b.begun(at).await {
                            tracing::debug!(error = %e, "cannot record the session start");
                        }
                    });
                    observe("opened; starting together", &status);
                    return Gate::Go;
                }
                "started" => {
                    observe("started without this member", &status);
                    return fail(Error::transient(format!(
                        "session {id} tag {tag} started without node {node}: it joined after \
                             the {} s hold-off (members that ran: {})",
                        session.hold_off_seconds,
                        status.present.join(", ")
                    )));
                }
                "aborted" => {
                    observe("aborted", &status);
                    return fail(Error::transient(format!(
                        "session {id} tag {tag} aborted: node(s) {} did not join within {} s",
                        status.missing.join(", "),
                        session.hold_off_seconds
                    )));
                }
                "mismatch" => {
                    return fail(Error::usage(format!(
                        "session {id} tag {tag} was opened with members {} but this task \
                             lists {}: the tasks of one session must list the same members",
                        status.members.join(", "),
                        barrier.members.replace(',', ", ")
                    )));
                }
                other => {
                    // The record vanished (expired or deleted) or is unreadable: join again.
                    tracing::warn!(session = %id, tag = %tag, state = %other, "session record not as expected; joining again");
                    joined = false;
                }
            },
            Err(e) if clock.elapsed() > give_up => {
                let _ = barrier.leave().await;
                return fail(Error::transient(format!(
                    "session {id} tag {tag}: cannot reach Redis to meet the other members \
                         ({e}); the session barrier was given up"
                )));
            }
            Err(e) => {
                tracing::warn!(error = %e, session = %id, tag = %tag, "cannot reach the session barrier in Redis; retrying")
            }
        }
        // A poll that remains: the barrier is a Redis record the other members' workers change,
        // and Redis tells no one (keyspace notifications are off by default), so a member reads
        // it again every POLL_INTERVAL, or at once when the worker stops or the lease is lost.
        let stopping = tokio::select! {
            stopping = shared.sleep_or_stop(POLL_INTERVAL) => stopping,
            _ = running.cancel.cancelled() => shared.stopping.is_cancelled(),
        };
        let lost = running.lease_lost.load(Ordering::SeqCst);
        if stopping || lost {
            match barrier.leave().await {
                Ok(true) => tracing::info!(session = %id, tag = %tag, "left the session barrier"),
                // The barrier was decided meanwhile: if it opened with this member, the others
                // are starting, so start with them (the shutdown grace period lets it finish).
                Ok(false) if !lost => {
                    joined = true;
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, session = %id, tag = %tag, "cannot leave the session barrier")
                }
            }
            return if lost { Gate::Lost } else { Gate::Stop };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freezer_contracts::ErrorClass;

    #[test]
    fn statuses_are_read_from_the_script_reply() {
        let reply = ["started", "250", "-10", "a,b", "", "a,b,c", "1"]
            .map(String::from)
            .to_vec();
        let s = Status::from_reply(reply);
        assert_eq!(s.state, "started");
        assert_eq!(s.start_in_ms, 250);
        assert_eq!(s.deadline_in_ms, -10);
        assert_eq!(s.present, ["a", "b"]);
        assert!(s.missing.is_empty());
        assert_eq!(s.members, ["a", "b", "c"]);
        assert!(s.joined);
    }

    #[test]
    fn results_are_stored_with_their_exit_code() {
        let ok = EventStatus::Succeeded {
            exit_code: 0,
            result: serde_json::json!({}),
        };
        assert_eq!(result_value(&ok).as_deref(), Some("succeeded:0"));
        let failed = EventStatus::Failed {
            error_class: ErrorClass::Transient,
            exit_code: 1,
            reason: "x".into(),
        };
        assert_eq!(result_value(&failed).as_deref(), Some("failed:1"));
        assert_eq!(result_value(&EventStatus::Started), None);
    }

    #[test]
    fn a_task_for_a_node_outside_the_session_fails_permanently() {
        let session = Session {
            id: "s".into(),
            tag: "t".into(),
            members: vec!["a".into(), "b".into()],
            hold_off_seconds: 10,
            policy: SessionPolicy::Abort,
        };
        assert!(check_member("a", &session).is_none());
        let Some(EventStatus::Failed {
            error_class,
            reason,
            ..
        }) = check_member("c", &session)
        else {
            panic!("c is not a member")
        };
        assert_eq!(error_class, ErrorClass::Permanent);
        assert!(
            reason.contains("node c is not a member of session s tag t"),
            "{reason}"
        );
    }
}
