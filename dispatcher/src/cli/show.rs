//! `status`, `workers` and `sessions`: read Redis ([`freezer_dispatcher::status`]) and print JSON
//! (`--json`, the library's field names) or a table.

use freezer_dispatcher::config::DispatcherSection;
use freezer_dispatcher::runs;
use freezer_dispatcher::status;
use freezer_dispatcher::Error;
use serde_json::Value;

fn redis(cfg: &DispatcherSection) -> Result<redis::aio::ConnectionManager, Error> {
    runs::redis(&cfg.redis_url)
}

fn redis_err(e: redis::RedisError) -> Error {
    Error::redis("redis")(e)
}

/// `workers [--json]`.
pub async fn workers(cfg: &DispatcherSection, json: bool) -> Result<i32, Error> {
    let list = status::workers(&mut redis(cfg)?, &cfg.keys())
        .await
        .map_err(redis_err)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(0);
    }
    println!(
        "{:<24} {:<6} {:<10} {:>5} {:>8} {:<24} {:>9}",
        "NODE", "STATE", "VERSION", "FREE", "RUNNING", "POOLS", "SEEN"
    );
    for w in &list {
        println!(
            "{:<24} {:<6} {:<10} {:>5} {:>8} {:<24} {:>8.1}s",
            w.node,
            if w.live { "live" } else { "stale" },
            w.version.as_deref().unwrap_or("-"),
            w.free_slots
                .zip(w.capacity)
                .map_or("-".into(), |(f, c)| format!("{f}/{c}")),
            w.running.len(),
            if w.pools.is_empty() {
                "-".into()
            } else {
                w.pools.join(",")
            },
            w.last_seen_seconds,
        );
    }
    Ok(0)
}

/// `sessions [--json]`.
pub async fn sessions(cfg: &DispatcherSection, json: bool) -> Result<i32, Error> {
    let list = status::sessions(&mut redis(cfg)?, &cfg.keys(), 100)
        .await
        .map_err(redis_err)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(0);
    }
    if list.is_empty() {
        println!("no sessions");
        return Ok(0);
    }
    println!(
        "{:<32} {:<6} {:<9} {:<9} {:<30} {:<30}",
        "SESSION", "TAG", "STATE", "RESULT", "PRESENT", "MISSING"
    );
    for s in &list {
        let f = |k: &str| s.fields.get(k).map_or("-", String::as_str).to_string();
        println!(
            "{:<32} {:<6} {:<9} {:<9} {:<30} {:<30}",
            s.id,
            s.tag,
            if s.fields.is_empty() {
                "expired".into()
            } else {
                f("state")
            },
            f("result"),
            f("present"),
            f("missing"),
        );
        for (k, v) in s.fields.iter().filter(|(k, _)| k.starts_with("result:")) {
            println!("    {} {v}", &k["result:".len()..]);
        }
    }
    Ok(0)
}

/// `status [ID] [--json]`.
pub async fn status(cfg: &DispatcherSection, id: Option<&str>, json: bool) -> Result<i32, Error> {
    let found = status::lookup(&mut redis(cfg)?, &cfg.keys(), id)
        .await
        .map_err(redis_err)?;
    let Some(v) = found else {
        return Err(Error::NotFound(format!(
            "no task, run or job named {:?} (records expire; see the job's history)",
            id.unwrap_or("")
        )));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    match v["type"].as_str() {
        Some("task") => {
            let f = &v["fields"];
            println!("task     {}", v["task_id"].as_str().unwrap_or(""));
            for k in [
                "state",
                "kind",
                "node",
                "queue",
                "job_id",
                "run_id",
                "attempt",
                "published_at",
            ] {
                if let Some(x) = f[k].as_str() {
                    println!("{k:<8} {x}");
                }
            }
            if let Some(e) = v["event"].as_object() {
                for k in ["exit_code", "error_class", "reason"] {
                    if let Some(x) = e.get(k) {
                        println!("{k:<8} {}", text(x));
                    }
                }
            }
        }
        Some("run") => print_run(&v["run"], v["state"].as_str().unwrap_or("")),
        Some("job") => {
            println!(
                "job {}: last {} runs",
                v["job_id"].as_str().unwrap_or(""),
                v["runs"].as_array().map_or(0, Vec::len)
            );
            println!("{:<40} {:<22} {:<10}", "RUN", "ENDED", "RESULT");
            for r in v["runs"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:<22} {:<10}",
                    text(&r["run_id"]),
                    text(&r["ended_at"]),
                    text(&r["result"])
                );
            }
        }
        _ => {
            let runs = v["runs"].as_array().cloned().unwrap_or_default();
            if runs.is_empty() {
                println!("no runs in progress");
            }
            for r in runs {
                print_run(&r["run"], r["state"].as_str().unwrap_or(""));
                println!();
            }
        }
    }
    Ok(0)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_run(run: &Value, state: &str) {
    println!(
        "run {} (job {}): {state}, fired {}, started {}, ended {}",
        text(&run["run_id"]),
        text(&run["job_id"]),
        text(&run["fire_time"]),
        text(&run["started_at"]),
        text(&run["ended_at"])
    );
    for (i, a) in run["actions"].as_array().into_iter().flatten().enumerate() {
        println!(
            "  action {i} {:<8} {:<10} attempts {} {}",
            text(&a["kind"]),
            text(&a["state"]),
            text(&a["attempts"]),
            a["reason"].as_str().unwrap_or("")
        );
        for t in a["tasks"].as_array().into_iter().flatten() {
            println!(
                "    task {} attempt {} on {} -> {}",
                text(&t["task_id"]),
                text(&t["attempt"]),
                t["node"].as_str().or(t["queue"].as_str()).unwrap_or("-"),
                text(&t["outcome"])
            );
        }
    }
}
