//! A run as stored in Redis (`run:<run id>`, see [`crate::keys`]): its plan (the job as it was
//! when the run became due, so a leader taking over needs no job file), the result of each
//! action with every task published for it, and the tasks in flight. The whole document is
//! rewritten after each step, and before each publish (write-ahead), so a run resumed elsewhere
//! knows which task ids it already published and publishes them again at most (the worker runs a
//! task id once).

use crate::jobs::{Job, Target};
use freezer_contracts::{SessionPolicy, TaskEnvelope, TaskSpec, UtcTime};
use freezer_fleet::keys::{FINISHED_RUN_TTL, HISTORY_TTL, RUN_TTL};
use freezer_fleet::Keys;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where the tasks of a run go (the job's [`Target`], serializable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PlanTarget {
    /// One node's queue.
    Node {
        /// Node name.
        node: String,
    },
    /// A pool's queue.
    Pool {
        /// Pool name.
        pool: String,
    },
    /// One task per member node, meeting at a barrier.
    Session {
        /// Member nodes.
        nodes: Vec<String>,
        /// Barrier hold-off.
        hold_off_seconds: u64,
        /// Abort (all-or-nothing) or proceed (best-effort).
        policy: SessionPolicy,
    },
}

/// One action of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanAction {
    /// The task spec.
    pub spec: TaskSpec,
    /// Runs even after an earlier failure.
    pub mandatory: bool,
    /// Further tries after a failure.
    pub max_retries: u32,
    /// Wait before each retry, ms.
    pub retry_interval_ms: u64,
}

/// What a run executes: the job when the run became due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Job id.
    pub job_id: String,
    /// Where tasks go.
    pub target: PlanTarget,
    /// Actions, in order.
    pub actions: Vec<PlanAction>,
    /// Each task's window: `expires_at` = its earliest start + this.
    pub expires_after_ms: u64,
}

impl Plan {
    /// The plan of `job`.
    pub fn of(job: &Job) -> Plan {
        let target = match &job.target {
            Target::Node(n) => PlanTarget::Node { node: n.clone() },
            Target::Pool(p) => PlanTarget::Pool { pool: p.clone() },
            Target::Session(s) => PlanTarget::Session {
                nodes: s.nodes.clone(),
                hold_off_seconds: s.hold_off.as_secs(),
                policy: s.policy,
            },
        };
        Plan {
            job_id: job.id.clone(),
            target,
            actions: job
                .actions
                .iter()
                .map(|a| PlanAction {
                    spec: a.spec.clone(),
                    mandatory: a.mandatory,
                    max_retries: a.max_retries,
                    retry_interval_ms: a.retry_interval.as_millis() as u64,
                })
                .collect(),
            expires_after_ms: job.expires_after.as_millis() as u64,
        }
    }

    /// The tasks' window length.
    pub fn expires_after(&self) -> Duration {
        Duration::from_millis(self.expires_after_ms)
    }
}

/// Where an action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionState {
    /// Not reached yet.
    Pending,
    /// Its tasks are published (the current attempt runs or waits to be retried).
    Running,
    /// Every task of its last attempt succeeded.
    Succeeded,
    /// Failed after its retries (or a rejection, which is not retried).
    Failed,
    /// Not run: an earlier action failed and this one is not mandatory.
    Skipped,
}

/// One published task and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Task id.
    pub task_id: String,
    /// Attempt (from 1).
    pub attempt: u32,
    /// The queue it was published to.
    pub queue: String,
    /// The session member it is for, or the node that reported on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `succeeded`, `failed`, `expired` or `rejected`; none while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Exit code of a finished task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One action's progress and result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Task kind.
    pub kind: String,
    /// Where it is.
    pub state: ActionState,
    /// Attempts made (published).
    pub attempts: u32,
    /// Every task published for it, all attempts.
    pub tasks: Vec<TaskRecord>,
    /// The tasks of the current attempt (kept to build the retry and to resume).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current: Vec<TaskEnvelope>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A run: the `doc` field of `run:<run id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDoc {
    /// Run id.
    pub run_id: String,
    /// Job id.
    pub job_id: String,
    /// When it was due.
    pub fire_time: UtcTime,
    /// When this dispatcher started it.
    pub started_at: UtcTime,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<UtcTime>,
    /// `succeeded` or `failed` once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// What it executes.
    pub plan: Plan,
    /// One record per plan action.
    pub actions: Vec<ActionRecord>,
}

impl RunDoc {
    /// A new run of `plan`.
    pub fn new(run_id: &str, fire_time: UtcTime, plan: Plan) -> RunDoc {
        RunDoc {
            run_id: run_id.into(),
            job_id: plan.job_id.clone(),
            fire_time,
            started_at: freezer_fleet::clock::now(),
            ended_at: None,
            result: None,
            actions: plan
                .actions
                .iter()
                .map(|a| ActionRecord {
                    kind: a.spec.kind().as_str().into(),
                    state: ActionState::Pending,
                    attempts: 0,
                    tasks: Vec::new(),
                    current: Vec::new(),
                    reason: None,
                })
                .collect(),
            plan,
        }
    }

    /// The history entry: the run without its plan and in-flight envelopes.
    pub fn summary(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("plan");
        }
        v
    }
}

const CREATE: &str = r#"
if redis.call('HSETNX', KEYS[1], 'job_id', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'doc', ARGV[2], 'updated_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return 1
"#;

/// Creates the run record; false when the run id was seen before (then nothing is written).
pub async fn create(
    redis: &mut ConnectionManager,
    keys: &Keys,
    doc: &RunDoc,
) -> redis::RedisResult<bool> {
    let n: i64 = redis::Script::new(CREATE)
        .key(keys.run(&doc.run_id))
        .key(keys.active_runs())
        .arg(&doc.job_id)
        .arg(serde_json::to_string(doc).unwrap_or_default())
        .arg(freezer_fleet::clock::now().to_string())
        .arg(RUN_TTL.as_secs())
        .arg(&doc.run_id)
        .invoke_async(redis)
        .await?;
    Ok(n == 1)
}

/// Rewrites the run record (state `running`).
pub async fn save(
    redis: &mut ConnectionManager,
    keys: &Keys,
    doc: &RunDoc,
) -> redis::RedisResult<()> {
    let key = keys.run(&doc.run_id);
    redis::pipe()
        .cmd("HSET")
        .arg(&key)
        .arg("doc")
        .arg(serde_json::to_string(doc).unwrap_or_default())
        .arg("updated_at")
        .arg(freezer_fleet::clock::now().to_string())
        .ignore()
        .cmd("EXPIRE")
        .arg(&key)
        .arg(RUN_TTL.as_secs())
        .ignore()
        .query_async(redis)
        .await
}

/// Records the finished run: final state, history entry (trimmed to `history_len`), out of the
/// active set, shorter TTL.
pub async fn finish(
    redis: &mut ConnectionManager,
    keys: &Keys,
    doc: &RunDoc,
    history_len: usize,
) -> redis::RedisResult<()> {
    let key = keys.run(&doc.run_id);
    let history = keys.history(&doc.job_id);
    redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(&key)
        .arg("doc")
        .arg(serde_json::to_string(doc).unwrap_or_default())
        .arg("state")
        .arg(doc.result.as_deref().unwrap_or("failed"))
        .arg("updated_at")
        .arg(freezer_fleet::clock::now().to_string())
        .ignore()
        .cmd("EXPIRE")
        .arg(&key)
        .arg(FINISHED_RUN_TTL.as_secs())
        .ignore()
        .cmd("LPUSH")
        .arg(&history)
        .arg(doc.summary().to_string())
        .ignore()
        .cmd("LTRIM")
        .arg(&history)
        .arg(0)
        .arg(history_len.max(1) as i64 - 1)
        .ignore()
        .cmd("EXPIRE")
        .arg(&history)
        .arg(HISTORY_TTL.as_secs())
        .ignore()
        .cmd("SREM")
        .arg(keys.active_runs())
        .arg(&doc.run_id)
        .ignore()
        .query_async(redis)
        .await
}

/// The runs to resume: every active run whose record still exists (others are dropped from the
/// set).
pub async fn active(redis: &mut ConnectionManager, keys: &Keys) -> redis::RedisResult<Vec<RunDoc>> {
    let ids: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.active_runs())
        .query_async(redis)
        .await?;
    let mut out = Vec::new();
    for id in ids {
        let doc: Option<String> = redis::cmd("HGET")
            .arg(keys.run(&id))
            .arg("doc")
            .query_async(redis)
            .await?;
        match doc.and_then(|d| serde_json::from_str::<RunDoc>(&d).ok()) {
            Some(d) if d.result.is_none() => out.push(d),
            _ => {
                tracing::warn!(run_id = %id, "forgetting an active run whose record is gone or unreadable");
                redis::cmd("SREM")
                    .arg(keys.active_runs())
                    .arg(&id)
                    .query_async::<()>(redis)
                    .await?;
            }
        }
    }
    Ok(out)
}
