//! Every Redis key Freezer uses, in one place: [`Keys`] builds each name from its parts under a
//! configured prefix (`key_prefix`, [`KEY_PREFIX`] = `freezer:` by default, so Freezer can share
//! a Redis with other software and several fleets can share one Redis).
//!
//! With the default prefix the names are exactly those of the contracts' `coordination`
//! functions ([`freezer_contracts::task_key`], [`freezer_contracts::lock_key`], ...), which
//! document the keys as part of the wire contract; a test checks they agree.
//!
//! | key (after the prefix) | type | TTL | written by | read by |
//! |---|---|---|---|---|
//! | `task:<task id>` | hash: `state`, `node`, `queue`, `body`, `runs`, `event`; the dispatcher's `job_id`, `run_id`, `kind`, `attempt`, `published_at` | the task's `expires_at` + 1 day when queued; the worker's `record_ttl_seconds` from the claim on | dispatcher (creates it `queued`), workers (claim, final state) | both, `status` |
//! | `task:<task id>:lease` | string `<node>:<token>` | worker `lease_ttl_ms`, renewed each heartbeat | the worker running it | workers (reaper), dispatcher (is a task alive) |
//! | `task:<task id>:reap` | string (node) | twice `lease_ttl_ms` | the worker re-queuing an orphan | workers |
//! | `running` | set of task ids not yet reported final | none | workers | workers (reaper) |
//! | `lock:<scope>` | string (token) | the lock TTL, renewed while the task runs | workers (backup, prune) | workers |
//! | `fence:<scope>` | integer, `INCR`ed at each lock | none | workers | workers |
//! | `worker:<node>` | string: heartbeat JSON | three heartbeat intervals | that worker | dispatcher (`workers`) |
//! | `workers` | sorted set: node by last heartbeat (Unix ms) | none, stale entries trimmed | workers | workers, dispatcher (alive count) |
//! | `session:<id>:<tag>` | hash: the barrier of one session step | the worker's `record_ttl_seconds`, renewed | workers | workers, dispatcher (`sessions`, runs) |
//! | `sessions` | sorted set: `<id>/<tag>` by first join (Unix ms) | none, old entries trimmed | workers | dispatcher (`sessions`) |
//! | `run:<run id>` | hash: `job_id`, `state`, `doc`, `updated_at` | [`RUN_TTL`] while running, [`FINISHED_RUN_TTL`] once finished | dispatcher (leader) | dispatcher (`status`, take-over) |
//! | `runs:active` | set of run ids not finished | none | dispatcher (leader) | dispatcher (take-over, `status`) |
//! | `job:<job id>:runs` | list of finished runs (JSON), newest first, trimmed to `history_len` | [`HISTORY_TTL`] after the last run | dispatcher (leader) | dispatcher (`status`, `jobs`) |
//! | `job:<job id>:last_fired` | string: Unix seconds of the latest fired run | [`LAST_FIRED_TTL`] | dispatcher (scheduler, compare-and-set) | dispatcher (scheduler, `jobs`) |
//! | `dispatcher:requests` | list of `{"job_id","run_id"}` | [`REQUESTS_TTL`], at most [`MAX_REQUESTS`] entries | `freezer-dispatcher publish --job` | dispatcher (leader) |
//! | `dispatcher:leader` | string: the leading dispatcher's id | `leader_lease_ms`, renewed | dispatchers | dispatchers |

use freezer_contracts::KEY_PREFIX;
use std::time::Duration;

/// How long a run record lives while it runs (renewed at every change): a run stuck longer than
/// this is forgotten rather than kept forever.
pub const RUN_TTL: Duration = Duration::from_secs(30 * 86_400);
/// How long a finished run stays readable by `status RUN_ID` (its summary stays in the history).
pub const FINISHED_RUN_TTL: Duration = Duration::from_secs(7 * 86_400);
/// How long a job's history lives after its last run.
pub const HISTORY_TTL: Duration = Duration::from_secs(90 * 86_400);
/// How long a job's `last_fired` is kept after its latest run (400 days: longer than any yearly
/// schedule's gap), so the keys of deleted jobs go away.
pub const LAST_FIRED_TTL: Duration = Duration::from_secs(400 * 86_400);
/// TTL of the `dispatcher:requests` list, renewed by each request: requests nobody led long
/// enough to take are dropped after a day instead of piling up.
pub const REQUESTS_TTL: Duration = Duration::from_secs(86_400);
/// Most entries of `dispatcher:requests`: a flood of `publish --job` keeps the newest ones.
pub const MAX_REQUESTS: isize = 1_000;

/// The names of every Redis key under one prefix (see the module doc for the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    /// The keys under [`KEY_PREFIX`].
    fn default() -> Self {
        Keys::new(KEY_PREFIX)
    }
}

impl Keys {
    /// The keys under `prefix` (used as is: give it its trailing `:`).
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The prefix every key starts with (`SCAN MATCH <prefix>*` lists them all).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// `task:<task id>`: the task's record (hash).
    pub fn task(&self, task_id: &str) -> String {
        self.key(format_args!("task:{task_id}"))
    }

    /// `task:<task id>:lease`: the running worker's lease.
    pub fn task_lease(&self, task_id: &str) -> String {
        self.key(format_args!("task:{task_id}:lease"))
    }

    /// `task:<task id>:reap`: one reaper handles a given orphan at a time.
    pub fn task_reap(&self, task_id: &str) -> String {
        self.key(format_args!("task:{task_id}:reap"))
    }

    /// `running`: tasks that have not yet published their final event.
    pub fn running(&self) -> String {
        self.key(format_args!("running"))
    }

    /// `lock:<scope>`: the writer lock of a backup name (scope from
    /// [`freezer_contracts::lock_scope`]).
    pub fn lock(&self, scope: &str) -> String {
        self.key(format_args!("lock:{scope}"))
    }

    /// `fence:<scope>`: the fencing counter of [`Keys::lock`].
    pub fn fence(&self, scope: &str) -> String {
        self.key(format_args!("fence:{scope}"))
    }

    /// `worker:<node>`: a worker's heartbeat.
    pub fn worker(&self, node: &str) -> String {
        self.key(format_args!("worker:{node}"))
    }

    /// `workers`: every worker's last heartbeat (sorted set, Unix ms).
    pub fn workers(&self) -> String {
        self.key(format_args!("workers"))
    }

    /// `session:<id>:<tag>`: the barrier of one session step.
    pub fn session(&self, session_id: &str, tag: &str) -> String {
        self.key(format_args!("session:{session_id}:{tag}"))
    }

    /// `sessions`: every session by first join (sorted set, Unix ms).
    pub fn sessions(&self) -> String {
        self.key(format_args!("sessions"))
    }

    /// `run:<run id>`: one run of a job (hash).
    pub fn run(&self, run_id: &str) -> String {
        self.key(format_args!("run:{run_id}"))
    }

    /// `runs:active`: the runs not finished (set).
    pub fn active_runs(&self) -> String {
        self.key(format_args!("runs:active"))
    }

    /// `job:<job id>:runs`: a job's finished runs, newest first (list).
    pub fn history(&self, job_id: &str) -> String {
        self.key(format_args!("job:{job_id}:runs"))
    }

    /// `job:<job id>:last_fired`: Unix seconds of the job's latest fired run.
    pub fn last_fired(&self, job_id: &str) -> String {
        self.key(format_args!("job:{job_id}:last_fired"))
    }

    /// `dispatcher:requests`: runs asked for by `publish --job` (list).
    pub fn requests(&self) -> String {
        self.key(format_args!("dispatcher:requests"))
    }

    /// `dispatcher:leader`: the leader lease.
    pub fn leader(&self) -> String {
        self.key(format_args!("dispatcher:leader"))
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;
    use freezer_contracts::TaskId;

    #[test]
    fn default_keys_are_the_contracts_keys() {
        let k = Keys::default();
        let id = TaskId::parse("01936a3e-7c1b-7000-8000-000000000001").unwrap();
        assert_eq!(k.task(id.as_str()), freezer_contracts::task_key(&id));
        assert_eq!(k.lock("s/c/h_n"), freezer_contracts::lock_key("s/c/h_n"));
        assert_eq!(k.fence("s/c/h_n"), freezer_contracts::fence_key("s/c/h_n"));
        assert_eq!(k.worker("web1"), freezer_contracts::worker_key("web1"));
        assert_eq!(
            k.session("db", "backup"),
            freezer_contracts::session_key("db", "backup")
        );
    }

    #[test]
    fn keys_follow_the_prefix() {
        let k = Keys::new("p:");
        assert_eq!(k.prefix(), "p:");
        assert_eq!(k.run("j.1"), "p:run:j.1");
        assert_eq!(k.history("j"), "p:job:j:runs");
        assert_eq!(k.last_fired("j"), "p:job:j:last_fired");
        assert_eq!(k.session("r", "0"), "p:session:r:0");
        assert_eq!(k.task_lease("t"), "p:task:t:lease");
        assert_eq!(k.task_reap("t"), "p:task:t:reap");
        assert_eq!(k.running(), "p:running");
        assert_eq!(k.workers(), "p:workers");
        assert_eq!(k.sessions(), "p:sessions");
        assert_eq!(k.active_runs(), "p:runs:active");
        assert_eq!(k.requests(), "p:dispatcher:requests");
        assert_eq!(k.leader(), "p:dispatcher:leader");
    }
}
