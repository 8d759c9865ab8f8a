//! What `status`, `workers` and `sessions` read from Redis, as JSON-ready values with stable field
//! names (the command line prints them as JSON or as tables). Absent keys are empty answers, not
//! errors: a fleet that has never run a session simply has none.

use freezer_contracts::TaskId;
use freezer_fleet::Keys;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One worker from its heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    /// Node name.
    pub node: String,
    /// Whether its heartbeat key still exists (it expires three intervals after the last beat).
    pub live: bool,
    /// Pools it consumes.
    pub pools: Vec<String>,
    /// `freezer-worker` version.
    pub version: Option<String>,
    /// Execution slots.
    pub capacity: Option<u64>,
    /// Slots free at the last beat.
    pub free_slots: Option<u64>,
    /// Task ids it held at the last beat.
    pub running: Vec<String>,
    /// Seconds since its last beat.
    pub last_seen_seconds: f64,
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64)
}

/// Every worker in `workers` (live first, then stale ones, each by node name).
pub async fn workers(
    redis: &mut ConnectionManager,
    keys: &Keys,
) -> redis::RedisResult<Vec<WorkerInfo>> {
    let nodes: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(keys.workers())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(redis)
        .await?;
    let mut out = Vec::new();
    for (node, score) in nodes {
        let body: Option<String> = redis::cmd("GET")
            .arg(keys.worker(&node))
            .query_async(redis)
            .await?;
        let hb: Value = body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        out.push(WorkerInfo {
            live: body.is_some(),
            pools: strings(&hb["pools"]),
            version: hb["version"].as_str().map(String::from),
            capacity: hb["capacity"].as_u64(),
            free_slots: hb["free_slots"].as_u64(),
            running: strings(&hb["running"]),
            last_seen_seconds: ((now_ms() - score) / 1000.0).max(0.0),
            node,
        });
    }
    out.sort_by(|a, b| b.live.cmp(&a.live).then(a.node.cmp(&b.node)));
    Ok(out)
}

/// One session barrier, as the workers record it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Session id (a run id for the dispatcher's sessions).
    pub id: String,
    /// Tag (the action index, `.attempt` for retries).
    pub tag: String,
    /// First join, Unix ms.
    pub first_join_ms: f64,
    /// The barrier's hash (`state`, `members`, `present`, `missing`, `joined:<node>`,
    /// `result:<node>`, ...); empty when it expired.
    pub fields: BTreeMap<String, String>,
}

/// The `limit` newest sessions.
pub async fn sessions(
    redis: &mut ConnectionManager,
    keys: &Keys,
    limit: usize,
) -> redis::RedisResult<Vec<SessionInfo>> {
    let entries: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
        .arg(keys.sessions())
        .arg(0)
        .arg(limit.max(1) as i64 - 1)
        .arg("WITHSCORES")
        .query_async(redis)
        .await?;
    let mut out = Vec::new();
    for (entry, score) in entries {
        let (id, tag) = entry.split_once('/').unwrap_or((entry.as_str(), ""));
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(keys.session(id, tag))
            .query_async(redis)
            .await?;
        out.push(SessionInfo {
            id: id.into(),
            tag: tag.into(),
            first_join_ms: score,
            fields,
        });
    }
    Ok(out)
}

/// What `status [ID]` shows: without an id the runs in progress; with one, the task, run or
/// job it names (tried in that order); `None` when nothing has that id.
pub async fn lookup(
    redis: &mut ConnectionManager,
    keys: &Keys,
    id: Option<&str>,
) -> redis::RedisResult<Option<Value>> {
    let Some(id) = id else {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys.active_runs())
            .query_async(redis)
            .await?;
        let mut runs = Vec::new();
        for id in ids {
            if let Some(r) = run(redis, keys, &id).await? {
                runs.push(r);
            }
        }
        runs.sort_by(|a, b| {
            a["run"]["started_at"]
                .as_str()
                .cmp(&b["run"]["started_at"].as_str())
        });
        return Ok(Some(json!({ "type": "active_runs", "runs": runs })));
    };
    if TaskId::parse(id).is_ok() {
        let mut fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(keys.task(id))
            .query_async(redis)
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        fields.remove("body");
        let event = fields
            .remove("event")
            .and_then(|e| serde_json::from_str::<Value>(&e).ok());
        return Ok(Some(
            json!({ "type": "task", "task_id": id, "fields": fields, "event": event }),
        ));
    }
    if let Some(r) = run(redis, keys, id).await? {
        return Ok(Some(r));
    }
    let history: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.history(id))
        .arg(0)
        .arg(-1)
        .query_async(redis)
        .await?;
    if history.is_empty() {
        return Ok(None);
    }
    let runs: Vec<Value> = history
        .iter()
        .filter_map(|h| serde_json::from_str(h).ok())
        .collect();
    Ok(Some(json!({ "type": "job", "job_id": id, "runs": runs })))
}

/// The run record `run_id`, without its plan.
async fn run(
    redis: &mut ConnectionManager,
    keys: &Keys,
    run_id: &str,
) -> redis::RedisResult<Option<Value>> {
    let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.run(run_id))
        .query_async(redis)
        .await?;
    let Some(doc) = fields.get("doc") else {
        return Ok(None);
    };
    let mut doc: Value = serde_json::from_str(doc).unwrap_or(Value::Null);
    if let Some(o) = doc.as_object_mut() {
        o.remove("plan");
        if let Some(actions) = o.get_mut("actions").and_then(Value::as_array_mut) {
            for a in actions {
                if let Some(a) = a.as_object_mut() {
                    a.remove("current");
                }
            }
        }
    }
    Ok(Some(json!({
        "type": "run",
        "run_id": run_id,
        "state": fields.get("state"),
        "updated_at": fields.get("updated_at"),
        "run": doc,
    })))
}
