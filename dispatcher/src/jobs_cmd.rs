//! `freezer-dispatcher jobs [--json]`: the job definitions, when they fire next and last fired,
//! and the files that could not be read.
//!
//! [`jobs_command`] is the whole command: it loads the jobs directory
//! ([`crate::jobs::dir::load_dir`]), reads the jobs' `last_fired` from Redis if it can within
//! [`REDIS_PATIENCE`] ([`crate::scheduler::read_last_fired`]; without Redis the column is empty),
//! and renders [`render_jobs`] or [`render_jobs_json`]. Both take `now` so that tests are exact.

use freezer_contracts::{SessionPolicy, UtcTime};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::DispatcherSection;
use crate::jobs::dir::load_dir;
use crate::jobs::{JobSet, LoadError, Target};

/// How long `jobs` waits for Redis before listing without last fire times.
pub const REDIS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs `freezer-dispatcher jobs [--json]`: returns the text to print and whether some job file
/// is broken (the caller may exit with 1 then, so scripts notice).
pub async fn jobs_command(cfg: &DispatcherSection, json: bool) -> (String, bool) {
    let set = load_dir(&cfg.jobs_dir, None);
    let ids: Vec<&str> = set.jobs.keys().map(String::as_str).collect();
    let known = tokio::time::timeout(REDIS_PATIENCE, async {
        let client = redis::Client::open(cfg.redis_url.as_str()).ok()?;
        let mut redis = client.get_multiplexed_async_connection().await.ok()?;
        let fired = crate::scheduler::read_last_fired(&mut redis, &cfg.keys(), &ids)
            .await
            .ok()?;
        let mut results = HashMap::new();
        for id in &ids {
            let newest: Option<String> = redis::cmd("LINDEX")
                .arg(cfg.keys().history(id))
                .arg(0)
                .query_async(&mut redis)
                .await
                .ok()?;
            if let Some(run) = newest.and_then(|r| serde_json::from_str::<Value>(&r).ok()) {
                results.insert(id.to_string(), last_result(&run));
            }
        }
        Some((fired, results))
    })
    .await
    .ok()
    .flatten();
    let (last, results) = known.unwrap_or_default();
    let mut r = report(&set, &last, freezer_fleet::clock::now());
    for row in &mut r.jobs {
        row.last_result = results.get(&row.id).cloned();
    }
    let text = if json {
        // A report of strings, times and paths always serializes.
        serde_json::to_string_pretty(&r).unwrap_or_default()
    } else {
        render_report(&r)
    };
    (text, !set.errors.is_empty())
}

/// `succeeded at 2026-11-25T02:30:04Z` from a run summary of a job's history.
fn last_result(run: &Value) -> String {
    let result = run["result"].as_str().unwrap_or("?");
    match run["ended_at"].as_str() {
        Some(at) => format!("{result} at {at}"),
        None => result.to_string(),
    }
}

/// What `jobs --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct JobsReport {
    /// Every job, by id.
    pub jobs: Vec<JobRow>,
    /// Broken files, one entry per problem.
    pub errors: Vec<LoadError>,
}

/// One job in the report.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    /// The job id.
    pub id: String,
    /// Where its tasks go (`node web1`, `pool verify`, `session db1,db2 (all-or-nothing, hold-off 1m)`).
    pub target: String,
    /// The kinds of its actions, in order.
    pub actions: Vec<String>,
    /// The schedule (`cron "0 30 2 * * *" Europe/Berlin`, `every 6h`, ...); none: on demand only.
    pub schedule: Option<String>,
    /// The next fire time after now, if any.
    pub next_fire: Option<UtcTime>,
    /// The latest fired run, if known.
    pub last_fired: Option<UtcTime>,
    /// A one-shot run that was found too late and will not run.
    pub missed: Option<UtcTime>,
    /// The file it is defined in.
    pub file: PathBuf,
    /// The result of its newest finished run (`succeeded at ...`), from its history in Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
}

/// Builds the report; `last_fired` may be empty when Redis is not reachable.
pub fn report(set: &JobSet, last_fired: &HashMap<String, UtcTime>, now: UtcTime) -> JobsReport {
    let jobs = set
        .jobs
        .values()
        .map(|job| {
            let last = last_fired.get(&job.id).copied();
            let schedule = job.schedule.as_ref();
            JobRow {
                id: job.id.clone(),
                target: describe_target(&job.target),
                actions: job
                    .actions
                    .iter()
                    .map(|a| a.spec.kind().to_string())
                    .collect(),
                schedule: schedule.map(|s| s.describe()),
                next_fire: schedule.and_then(|s| s.next_after(now)),
                last_fired: last,
                missed: schedule.and_then(|s| s.missed(last, now)),
                file: job.file.clone(),
                last_result: None,
            }
        })
        .collect();
    JobsReport {
        jobs,
        errors: set.errors.clone(),
    }
}

/// The human-readable form: a table of jobs, then the broken files.
pub fn render_jobs(set: &JobSet, last_fired: &HashMap<String, UtcTime>, now: UtcTime) -> String {
    render_report(&report(set, last_fired, now))
}

/// The human-readable form of a report (with its last results, when known).
pub fn render_report(r: &JobsReport) -> String {
    let opt = |t: Option<UtcTime>| t.map_or_else(|| "-".to_string(), |t| t.to_string());
    let with_results = r.jobs.iter().any(|j| j.last_result.is_some());
    let mut header: Vec<String> = ["ID", "TARGET", "ACTIONS", "SCHEDULE", "NEXT", "LAST"]
        .iter()
        .map(|h| h.to_string())
        .collect();
    if with_results {
        header.push("RESULT".into());
    }
    header.push("FILE".into());
    let mut rows = vec![header];
    for j in &r.jobs {
        let next = match j.missed {
            Some(m) => format!("missed {m}"),
            None => opt(j.next_fire),
        };
        let mut row = vec![
            j.id.clone(),
            j.target.clone(),
            j.actions.join(","),
            j.schedule.clone().unwrap_or_else(|| "on demand".into()),
            next,
            opt(j.last_fired),
        ];
        if with_results {
            row.push(j.last_result.clone().unwrap_or_else(|| "-".into()));
        }
        row.push(j.file.display().to_string());
        rows.push(row);
    }
    let mut widths = vec![0usize; rows[0].len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    if r.jobs.is_empty() {
        out.push_str("no jobs\n");
    } else {
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
    }
    if !r.errors.is_empty() {
        out.push_str("\nbroken job files (their jobs keep their last good definition):\n");
        for e in &r.errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out
}

/// The JSON form (`jobs --json`): a [`JobsReport`].
pub fn render_jobs_json(
    set: &JobSet,
    last_fired: &HashMap<String, UtcTime>,
    now: UtcTime,
) -> String {
    // A report of strings, times and paths always serializes.
    serde_json::to_string_pretty(&report(set, last_fired, now)).unwrap_or_default()
}

fn describe_target(t: &Target) -> String {
    match t {
        Target::Node(n) => format!("node {n}"),
        Target::Pool(p) => format!("pool {p}"),
        Target::Session(s) => format!(
            "session {} ({}, hold-off {})",
            s.nodes.join(","),
            match s.policy {
                SessionPolicy::Abort => "all-or-nothing",
                SessionPolicy::Proceed => "best-effort",
            },
            humantime::format_duration(s.hold_off)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::file::parse_jobs;
    use std::path::Path;
    use std::sync::Arc;

    fn set() -> JobSet {
        let jobs = parse_jobs(
            Path::new("/jobs/web.toml"),
            include_str!("../jobs.example.toml"),
        )
        .unwrap();
        JobSet {
            jobs: jobs
                .into_iter()
                .map(|j| (j.id.clone(), Arc::new(j)))
                .collect(),
            errors: vec![LoadError {
                file: "/jobs/bad.toml".into(),
                message: "job \"x\": no action".into(),
            }],
        }
    }

    #[test]
    fn text_lists_jobs_next_fire_times_and_broken_files() {
        let now = UtcTime::parse("2026-11-25T10:00:00Z").unwrap();
        let last = HashMap::from([(
            "web1-home".to_string(),
            UtcTime::parse("2026-11-25T01:30:00Z").unwrap(),
        )]);
        let text = render_jobs(&set(), &last, now);
        let line = |id: &str| {
            text.lines()
                .find(|l| l.starts_with(id))
                .unwrap()
                .to_string()
        };
        let web = line("web1-home");
        assert!(web.contains("node web1"), "{web}");
        assert!(web.contains("backup,prune"), "{web}");
        assert!(web.contains("cron \"0 30 2 * * *\" Europe/Berlin"), "{web}");
        assert!(
            web.contains("2026-11-26T01:30:00Z  2026-11-25T01:30:00Z  /jobs/web.toml"),
            "{web}"
        );
        let db = line("db-cluster-once");
        assert!(
            db.contains("session db1,db2,db3 (all-or-nothing, hold-off 1m)"),
            "{db}"
        );
        assert!(line("restore-web1").contains("on demand"));
        assert!(
            text.contains("  /jobs/bad.toml: job \"x\": no action\n"),
            "{text}"
        );
        // A one-shot found too late shows as missed.
        let late = UtcTime::parse("2026-12-25T00:00:00Z").unwrap();
        let text = render_jobs(&set(), &HashMap::new(), late);
        assert!(text.contains("missed 2026-12-24T03:00:00Z"), "{text}");
    }

    #[tokio::test]
    async fn the_command_lists_the_directory_even_without_redis() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("web.toml"),
            include_str!("../jobs.example.toml"),
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.toml"), "[[job]]\n").unwrap();
        let cfg = DispatcherSection {
            jobs_dir: dir.path().to_path_buf(),
            redis_url: "redis://127.0.0.1:1/".into(),
            ..Default::default()
        };
        let (text, broken) = jobs_command(&cfg, false).await;
        assert!(broken);
        assert!(
            text.contains("web1-home") && text.contains("bad.toml: job[0]: id: missing"),
            "{text}"
        );
        let (json, _) = jobs_command(&cfg, true).await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["jobs"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn json_has_every_field() {
        let now = UtcTime::parse("2026-11-25T10:00:00Z").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&render_jobs_json(&set(), &HashMap::new(), now)).unwrap();
        let verify = v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == "verify-home")
            .unwrap();
        assert_eq!(verify["target"], "pool verify");
        assert_eq!(verify["schedule"], "every 6h from 2026-12-01T00:00:00Z");
        assert_eq!(verify["next_fire"], "2026-12-01T00:00:00Z");
        assert_eq!(verify["last_fired"], serde_json::Value::Null);
        assert_eq!(verify["file"], "/jobs/web.toml");
        assert_eq!(verify["actions"][0], "verify");
        assert_eq!(v["errors"][0]["file"], "/jobs/bad.toml");
        let empty = render_jobs(&JobSet::default(), &HashMap::new(), now);
        assert_eq!(empty, "no jobs\n");
    }
}
