//! What a job is, once its file has been read: the types the scheduler ([`super`]) fires and the
//! run engine executes. Parsing and validation live in [`super::file`]; time rules in
//! [`super::schedule`].

use freezer_contracts::{SessionPolicy, TaskSpec, UtcTime};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One job definition from a job file.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Unique among all job files (an identifier: `[A-Za-z0-9_][A-Za-z0-9._-]*`).
    pub id: String,
    /// The file it came from (for messages and `jobs`).
    pub file: PathBuf,
    /// Where its tasks go.
    pub target: Target,
    /// Run in order; see [`Action::mandatory`].
    pub actions: Vec<Action>,
    /// When it runs; `None`: only when asked (`publish --job`).
    pub schedule: Option<Schedule>,
    /// A task not started this long after its run began is reported expired instead of run
    /// (`expires_after`, default 1 h): a backup that could not start on time is not run hours late.
    pub expires_after: Duration,
}

/// Where a job's tasks are published.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `node = "web1"`: the node queue of one node.
    Node(String),
    /// `pool = "verify"`: any worker of the pool.
    Pool(String),
    /// `[session] nodes = [...]`: one task per node, meeting at a barrier (ARCHITECTURE.md §5).
    Session(SessionDef),
}

/// A multi-node session definition.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionDef {
    /// The member nodes (two or more).
    pub nodes: Vec<String>,
    /// How long members wait at the barrier for the others (`hold_off = "60s"`).
    pub hold_off: Duration,
    /// `all-or-nothing` (abort) or `best-effort` (proceed).
    pub policy: SessionPolicy,
}

/// One action of a job: a task spec plus OpenStack Freezer's per-action policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// The task to run (the CLI's option names).
    pub spec: TaskSpec,
    /// Runs even when an earlier action of the run failed (OpenStack Freezer's `mandatory`).
    pub mandatory: bool,
    /// Further tries after a failure (OpenStack Freezer's `max_retries`, default 0).
    pub max_retries: u32,
    /// Wait before each retry (`max_retries_interval`, default 60 s).
    pub retry_interval: Duration,
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The rule.
    pub when: When,
    /// No run before this instant.
    pub start: Option<UtcTime>,
    /// No run after this instant.
    pub end: Option<UtcTime>,
    /// IANA time zone the cron expression is read in (`"UTC"` by default).
    pub timezone: String,
}

/// The rule of a [`Schedule`].
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// A cron expression with seconds (`"0 30 2 * * *"`); five fields mean second 0.
    Cron(String),
    /// Every this long, aligned on `start` (or the Unix epoch): fire times are the same for
    /// every dispatcher, so two of them never disagree on which run is due.
    Every(Duration),
    /// Once, at this instant.
    At(UtcTime),
}

/// A run the scheduler found due (sent from the scheduler to the run engine).
#[derive(Debug, Clone)]
pub struct DueRun {
    /// The job, as loaded when the run became due.
    pub job: Arc<Job>,
    /// The scheduled fire time (missed runs are coalesced into the latest one).
    pub fire_time: UtcTime,
    /// `<job id>.<fire time as unix seconds>` for scheduled runs, unique per run: the key that
    /// makes "published once" hold across dispatchers and failovers.
    pub run_id: String,
}
