//! The Redis keys the dispatcher writes and reads, in one place so that `status`, the run engine
//! and ops agree (DESIGN.md §5). Every key is under the configured prefix (`freezer:` by default).
//!
//! Written by the dispatcher:
//! - `run:<run id>` (hash): one run, in progress or finished: `job_id`, `state` (`running`,
//!   `succeeded`, `failed`), `doc` (the whole run as JSON: plan, per-action results, the tasks in
//!   flight), `updated_at`. Created with `HSETNX job_id` (a run id seen before is never started
//!   again); TTL [`RUN_TTL`] while running (renewed at every change), [`FINISHED_RUN_TTL`] once
//!   finished.
//! - `runs:active` (set of run ids): runs not finished; a leader taking over resumes them.
//! - `job:<job id>:runs` (list, newest first): finished runs as JSON, trimmed to `history_len`,
//!   TTL [`HISTORY_TTL`] renewed at each run.
//! - `task:<task id>` (hash, shared with the workers, see the worker's `daemon::state`): the
//!   dispatcher creates it before publishing with `state` = `queued`, `queue`, `job_id`,
//!   `run_id`, `kind`, `attempt`, `published_at`, TTL until the task's `expires_at` + 1 day; the
//!   worker then sets `running`/final states, `node`, `event`.
//!
//! - `dispatcher:requests` (list): runs of jobs asked for by `publish --job` (JSON `{"job_id",
//!   "run_id"}`), pushed by the command and taken by the leader's `serve`.
//!
//! Read only: `task:<id>:lease` (a live worker holds the task), `worker:<node>` and `workers`
//! (heartbeats), `sessions` and `session:<id>:<tag>` (barriers, written by the workers).

use std::time::Duration;

/// How long a run record lives while it runs (renewed at every change): a run stuck longer than
/// this is forgotten rather than kept forever.
pub const RUN_TTL: Duration = Duration::from_secs(30 * 86_400);
/// How long a finished run stays readable by `status RUN_ID` (its summary stays in the history).
pub const FINISHED_RUN_TTL: Duration = Duration::from_secs(7 * 86_400);
/// How long a job's history lives after its last run.
pub const HISTORY_TTL: Duration = Duration::from_secs(90 * 86_400);

/// `<prefix>run:<run id>`.
pub fn run(prefix: &str, run_id: &str) -> String {
    format!("{prefix}run:{run_id}")
}

/// `<prefix>dispatcher:requests`.
pub fn requests(prefix: &str) -> String {
    format!("{prefix}dispatcher:requests")
}

/// `<prefix>runs:active`.
pub fn active_runs(prefix: &str) -> String {
    format!("{prefix}runs:active")
}

/// `<prefix>job:<job id>:runs`.
pub fn history(prefix: &str, job_id: &str) -> String {
    format!("{prefix}job:{job_id}:runs")
}

/// `<prefix>task:<task id>`.
pub fn task(prefix: &str, task_id: &str) -> String {
    format!("{prefix}task:{task_id}")
}

/// `<prefix>task:<task id>:lease`.
pub fn task_lease(prefix: &str, task_id: &str) -> String {
    format!("{prefix}task:{task_id}:lease")
}

/// `<prefix>worker:<node>`.
pub fn worker(prefix: &str, node: &str) -> String {
    format!("{prefix}worker:{node}")
}

/// `<prefix>workers` (sorted set: node -> last heartbeat, Unix ms).
pub fn workers(prefix: &str) -> String {
    format!("{prefix}workers")
}

/// `<prefix>sessions` (sorted set: `<id>/<tag>` -> first join, Unix ms).
pub fn sessions(prefix: &str) -> String {
    format!("{prefix}sessions")
}

/// `<prefix>session:<id>:<tag>`: the prefix plus the part of
/// [`freezer_contracts::session_key`] after the default prefix, as the workers write it.
pub fn session(prefix: &str, id: &str, tag: &str) -> String {
    let full = freezer_contracts::session_key(id, tag);
    let rest = full
        .strip_prefix(freezer_contracts::KEY_PREFIX)
        .unwrap_or(&full);
    format!("{prefix}{rest}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_follow_the_prefix() {
        assert_eq!(super::run("p:", "j.1"), "p:run:j.1");
        assert_eq!(super::history("p:", "j"), "p:job:j:runs");
        assert_eq!(super::session("p:", "r", "0"), "p:session:r:0");
        assert_eq!(super::session("freezer:", "r", "0"), "freezer:session:r:0");
    }
}
