//! `freezer-dispatcher publish --job ID [--wait]`: one run of a job now (an on-demand job, or a
//! scheduled one out of turn). The command does not publish tasks itself: it pushes a request
//! to `<prefix>dispatcher:requests` and the leading dispatcher runs it like a scheduled run, with
//! the job's actions, retries, session and history ([`take_requests`]), so a run is driven by
//! exactly one engine. With `--wait` it follows the run's record until it finishes.

use freezer_dispatcher::config::DispatcherSection;
use freezer_dispatcher::jobs::{DueRun, JobSet};
use freezer_dispatcher::{runs, Error};
use freezer_fleet::keys::{FINISHED_RUN_TTL, MAX_REQUESTS, REQUESTS_TTL};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How often the leader looks for requests, and `--wait` at the run's record.
const POLL: Duration = Duration::from_millis(300);

/// One request on the list.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    job_id: String,
    run_id: String,
}

/// Runs `publish --job`; the exit code (0 when the run succeeded, or was requested without
/// `--wait`; 1 when it failed or the wait timed out).
pub async fn run(
    cfg: &DispatcherSection,
    job_id: &str,
    wait: bool,
    timeout: Option<Duration>,
    json_out: bool,
) -> Result<i32, Error> {
    freezer_contracts::check_ident("--job", job_id)?;
    // Where the job files are readable here, an unknown job is a usage error at once.
    if cfg.jobs_dir.is_dir() {
        let set = freezer_dispatcher::jobs::dir::load_dir(&cfg.jobs_dir, None);
        if set.get(job_id).is_none() {
            return Err(Error::usage(format!(
                "no job {job_id:?} in {}",
                cfg.jobs_dir.display()
            )));
        }
    }
    let now_ms = freezer_fleet::clock::now().unix_seconds() * 1000;
    let run_id = format!("{job_id}.manual.{}", now_ms + i64::from(rand_ms()));
    let mut redis = runs::redis(&cfg.redis_url)?;
    let request = serde_json::to_string(&Request {
        job_id: job_id.into(),
        run_id: run_id.clone(),
    })
    .map_err(|e| Error::Internal {
        context: "cannot write the run request".into(),
        source: e.into(),
    })?;
    let leader: Option<String> = redis::cmd("GET")
        .arg(cfg.keys().leader())
        .query_async(&mut redis)
        .await
        .map_err(Error::redis("redis"))?;
    // Bounded: the list keeps the newest MAX_REQUESTS requests and lives a day past the last.
    let list = cfg.keys().requests();
    redis::pipe()
        .atomic()
        .cmd("RPUSH")
        .arg(&list)
        .arg(&request)
        .ignore()
        .cmd("LTRIM")
        .arg(&list)
        .arg(-MAX_REQUESTS)
        .arg(-1)
        .ignore()
        .cmd("EXPIRE")
        .arg(&list)
        .arg(REQUESTS_TTL.as_secs())
        .ignore()
        .query_async::<()>(&mut redis)
        .await
        .map_err(Error::redis("redis"))?;
    if leader.is_none() {
        eprintln!("no dispatcher leads now: the run starts when one does");
    }
    if !json_out {
        println!("{run_id}");
    }
    if !wait {
        if json_out {
            println!("{}", json!({ "run_id": run_id, "job_id": job_id }));
        }
        return Ok(0);
    }
    let key = cfg.keys().run(&run_id);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        let (state, doc): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("state")
            .arg("doc")
            .query_async(&mut redis)
            .await
            .map_err(Error::redis("redis"))?;
        if let Some(state @ ("succeeded" | "failed")) = state.as_deref() {
            let doc: serde_json::Value = doc
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(serde_json::Value::Null);
            if json_out {
                println!(
                    "{}",
                    json!({ "run_id": run_id, "state": state, "run": doc })
                );
            } else {
                eprintln!("run {run_id} {state}");
                if let Some(reason) = doc.get("reason").and_then(|r| r.as_str()) {
                    eprintln!("  {reason}");
                }
            }
            return Ok(if state == "succeeded" { 0 } else { 1 });
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(Error::Timeout(format!(
                "timed out waiting for run {run_id} (it may still run)"
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => {
                return Err(Error::Interrupted(format!(
                    "interrupted: run {run_id} goes on without this command"
                )));
            }
        }
    }
}

/// A few random milliseconds, so two requests of one job in the same millisecond differ.
fn rand_ms() -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    u16::from_le_bytes(b) % 1000
}

/// In `serve`: while this dispatcher leads, takes the requests of `publish --job` and hands
/// them to the engine as due runs (fire time: now). A request for a job the job files do not
/// define is recorded as a failed run with the reason, so `--wait` ends.
pub async fn take_requests(
    settings: Arc<DispatcherSection>,
    mut redis: redis::aio::ConnectionManager,
    jobs: watch::Receiver<Arc<JobSet>>,
    mut leading: watch::Receiver<bool>,
    engine: mpsc::Sender<DueRun>,
) {
    let list = settings.keys().requests();
    loop {
        if !*leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                return;
            }
            continue;
        }
        let popped: redis::RedisResult<Option<String>> =
            redis::cmd("LPOP").arg(&list).query_async(&mut redis).await;
        let text = match popped {
            Ok(Some(t)) => t,
            Ok(None) => {
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the run requests");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(request) = serde_json::from_str::<Request>(&text) else {
            tracing::warn!(request = %text, "dropping a malformed run request");
            continue;
        };
        let job = jobs.borrow().get(&request.job_id).cloned();
        let Some(job) = job else {
            tracing::warn!(job_id = %request.job_id, run_id = %request.run_id, "run requested for an unknown job");
            let key = settings.keys().run(&request.run_id);
            let doc = json!({ "run_id": request.run_id, "job_id": request.job_id,
                "result": "failed", "reason": format!("no job {:?} in the job files", request.job_id) });
            let _: redis::RedisResult<()> = redis::pipe()
                .cmd("HSET")
                .arg(&key)
                .arg("job_id")
                .arg(&request.job_id)
                .arg("state")
                .arg("failed")
                .arg("doc")
                .arg(doc.to_string())
                .cmd("EXPIRE")
                .arg(&key)
                .arg(FINISHED_RUN_TTL.as_secs())
                .query_async(&mut redis)
                .await;
            continue;
        };
        tracing::info!(job_id = %request.job_id, run_id = %request.run_id, "run requested");
        let due = DueRun {
            job,
            fire_time: freezer_fleet::clock::now(),
            run_id: request.run_id,
        };
        if engine.send(due).await.is_err() {
            return;
        }
    }
}
