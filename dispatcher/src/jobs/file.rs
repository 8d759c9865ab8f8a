//! Job files: TOML, one or more `[[job]]` tables per file, read into [`Job`]s.
//!
//! A job has:
//!
//! - `id`: unique among all job files; a name (`A-Z a-z 0-9 . _ -`, not starting with `.` or `-`).
//! - a target, exactly one of `node = "web1"` (that node's queue), `pool = "verify"` (any worker of
//!   the pool) or a `[job.session]` table: `nodes` (two or more), `hold_off` (how long members wait
//!   at the barrier, default `"60s"`), `policy` (`"all-or-nothing"`, the default, or `"best-effort"`).
//! - one or more `[[job.action]]` tables, run in order: `kind` (`backup`, `restore`, `prune`,
//!   `verify`, `list`, or `noop` for tests), `mandatory` (run even when an earlier action failed,
//!   default false), `max_retries` (further tries after a failure, default 0), `retry_interval`
//!   (default `"60s"`); every other key is an option of the kind, named as the worker's CLI option
//!   in snake_case (`--path-to-backup` is `path_to_backup`; see `freezer_contracts::spec`). Unknown
//!   options are refused, and the spec is checked as the worker checks it.
//! - optionally `schedule`, one of `{ cron = "0 30 2 * * *" }` (six fields with seconds, or five),
//!   `{ every = "6h" }` or `{ at = "2026-12-01T03:00:00Z" }`; `cron` and `every` may add `start` and
//!   `end` (RFC 3339 UTC times, quoted or as TOML datetimes), and `cron` a `timezone` (IANA name,
//!   default `UTC`). Without a schedule the job runs only when asked. See [`super::schedule`] for
//!   the rules.
//! - `expires_after` (default `"1h"`): a task not started this long after its run began is
//!   reported expired instead of run.
//!
//! Durations are written like `"90s"`, `"15m"`, `"6h"`, `"1d"`, `"1h 30m"`. Errors name the job and
//! the field (`job "web1-home": action[1].keep_daily: ...`); the directory loader adds the file.
//!
//! A full example (`dispatcher/jobs.example.toml`, parsed by a test):
//!
#![doc = concat!("```toml\n", include_str!("../../jobs.example.toml"), "```")]

use freezer_contracts::{check_ident, SessionPolicy, TaskKind, TaskSpec, UtcTime};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use toml::{Table, Value};

use super::error::{FieldError, JobFileError, JobRef};
use super::model::{Action, Job, Schedule, SessionDef, Target, When};
use super::schedule::{parse_cron, parse_timezone};

/// Default `expires_after`.
pub const DEFAULT_EXPIRES_AFTER: Duration = Duration::from_secs(3600);
/// Default `retry_interval` (OpenStack Freezer's `max_retries_interval`).
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// Default session `hold_off`.
pub const DEFAULT_HOLD_OFF: Duration = Duration::from_secs(60);
/// Most retries an action may ask for: more is a typo, not a policy.
pub const MAX_RETRIES: u32 = 100;

/// Parses the text of one job file (`file` is recorded in each job). On failure, every problem
/// found, one per problem (`job "x": field: what is wrong`), without the file name.
pub fn parse_jobs(file: &Path, text: &str) -> Result<Vec<Job>, Vec<JobFileError>> {
    let mut table: Table = toml::from_str(text).map_err(|e| vec![JobFileError::from(e)])?;
    let jobs = match table.remove("job") {
        Some(Value::Array(jobs)) => jobs,
        Some(other) => {
            return Err(vec![JobFileError::NotJobTables {
                found: other.type_str(),
            }])
        }
        None => Vec::new(),
    };
    let mut errors: Vec<JobFileError> = table
        .keys()
        .map(|k| JobFileError::UnknownTopLevelKey(k.clone()))
        .collect();
    let mut parsed = Vec::new();
    let mut ids = HashSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let Value::Table(job) = job else {
            errors.push(JobFileError::Job {
                job: JobRef::Index(i),
                error: FieldError::table("expected a table"),
            });
            continue;
        };
        let label = match job.get("id").and_then(Value::as_str) {
            Some(id) => JobRef::Id(id.to_string()),
            None => JobRef::Index(i),
        };
        match parse_job(file, job) {
            Ok(job) if !ids.insert(job.id.clone()) => errors.push(JobFileError::Job {
                job: label,
                error: FieldError::table("defined twice in this file"),
            }),
            Ok(job) => parsed.push(job),
            Err(error) => errors.push(JobFileError::Job { job: label, error }),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// One `[[job]]` table.
fn parse_job(file: &Path, mut t: Table) -> Result<Job, FieldError> {
    let id = take_str(&mut t, "id")?.ok_or_else(|| FieldError::field("id", "missing"))?;
    check_ident("id", &id)?;
    let node = take_str(&mut t, "node")?;
    let pool = take_str(&mut t, "pool")?;
    let session = take_table(&mut t, "session")?;
    let target = match (node, pool, session) {
        (Some(node), None, None) => {
            check_ident("node", &node)?;
            Target::Node(node)
        }
        (None, Some(pool), None) => {
            check_ident("pool", &pool)?;
            Target::Pool(pool)
        }
        (None, None, Some(session)) => {
            Target::Session(parse_session(session).map_err(|e| e.under("session"))?)
        }
        (None, None, None) => {
            return Err(FieldError::table(
                "no target: give node = \"...\", pool = \"...\" or a [job.session]",
            ))
        }
        _ => {
            return Err(FieldError::table(
                "give only one of node, pool and [job.session]",
            ))
        }
    };
    let schedule = take_table(&mut t, "schedule")?
        .map(|s| parse_schedule(s).map_err(|e| e.under("schedule")))
        .transpose()?;
    let expires_after = take_duration(&mut t, "expires_after")?.unwrap_or(DEFAULT_EXPIRES_AFTER);
    if expires_after.is_zero() {
        return Err(FieldError::field("expires_after", "must be more than 0s"));
    }
    if expires_after.as_secs() > freezer_contracts::task::MAX_WINDOW_SECONDS as u64 {
        return Err(FieldError::field(
            "expires_after",
            "must be at most 366d (a task's longest window)",
        ));
    }
    let actions = match t.remove("action") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        None | Some(Value::Array(_)) => {
            return Err(FieldError::table(
                "no action: add at least one [[job.action]]",
            ))
        }
        Some(other) => {
            return Err(FieldError::field(
                "action",
                format!("expected [[job.action]] tables, found {}", other.type_str()),
            ))
        }
    };
    let actions = actions
        .into_iter()
        .enumerate()
        .map(|(i, a)| parse_action(a).map_err(|e| e.under(&format!("action[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    refuse_unknown(&t)?;
    Ok(Job {
        id,
        file: file.to_path_buf(),
        target,
        actions,
        schedule,
        expires_after,
    })
}

/// A `[job.session]` table; errors start with the field name.
fn parse_session(mut t: Table) -> Result<SessionDef, FieldError> {
    let nodes = match t.remove("nodes") {
        Some(Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => {
                    check_ident(&format!("nodes[{i}]"), &s)?;
                    Ok(s)
                }
                other => Err(FieldError::field(
                    format!("nodes[{i}]"),
                    format!("expected a string, found {}", other.type_str()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(FieldError::field(
                "nodes",
                format!("expected a list, found {}", other.type_str()),
            ))
        }
        None => return Err(FieldError::field("nodes", "missing")),
    };
    if nodes.len() < 2 {
        return Err(FieldError::field(
            "nodes",
            "a session needs two or more nodes",
        ));
    }
    if let Some(dup) = nodes
        .iter()
        .enumerate()
        .find(|(i, n)| nodes[..*i].contains(n))
    {
        return Err(FieldError::field(
            "nodes",
            format!("{:?} is listed twice", dup.1),
        ));
    }
    let hold_off = take_duration(&mut t, "hold_off")?.unwrap_or(DEFAULT_HOLD_OFF);
    if hold_off.as_secs() > freezer_contracts::task::MAX_HOLD_OFF_SECONDS {
        return Err(FieldError::field("hold_off", "must be at most 1d"));
    }
    let policy = match take_str(&mut t, "policy")?.as_deref() {
        None | Some("all-or-nothing") => SessionPolicy::Abort,
        Some("best-effort") => SessionPolicy::Proceed,
        Some(other) => {
            return Err(FieldError::field(
                "policy",
                format!("{other:?} is not \"all-or-nothing\" or \"best-effort\""),
            ))
        }
    };
    refuse_unknown(&t)?;
    Ok(SessionDef {
        nodes,
        hold_off,
        policy,
    })
}

/// A `schedule` table; errors start with the field name.
fn parse_schedule(mut t: Table) -> Result<Schedule, FieldError> {
    let cron = take_str(&mut t, "cron")?;
    let every = take_duration(&mut t, "every")?;
    let at = take_time(&mut t, "at")?;
    let start = take_time(&mut t, "start")?;
    let end = take_time(&mut t, "end")?;
    let timezone = take_str(&mut t, "timezone")?;
    refuse_unknown(&t)?;
    let when = match (cron, every, at) {
        (Some(expr), None, None) => {
            parse_cron(&expr).map_err(|e| FieldError::field("cron", e.to_string()))?;
            When::Cron(expr)
        }
        (None, Some(d), None) => {
            if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
                return Err(FieldError::field(
                    "every",
                    format!(
                        "{} is not a whole number of seconds of at least 1s",
                        humantime::format_duration(d)
                    ),
                ));
            }
            When::Every(d)
        }
        (None, None, Some(at)) => When::At(at),
        (None, None, None) => return Err(FieldError::table("give one of cron, every and at")),
        _ => return Err(FieldError::table("give only one of cron, every and at")),
    };
    if let Some(tz) = &timezone {
        if !matches!(when, When::Cron(_)) {
            return Err(FieldError::field(
                "timezone",
                "only a cron schedule has one (every and at are instants)",
            ));
        }
        parse_timezone(tz).map_err(|e| FieldError::field("timezone", e.to_string()))?;
    }
    if matches!(when, When::At(_)) && (start.is_some() || end.is_some()) {
        return Err(FieldError::field(
            "start/end",
            "apply to cron and every, not to at",
        ));
    }
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(FieldError::field("end", format!("{e} is before start {s}")));
        }
    }
    Ok(Schedule {
        when,
        start,
        end,
        timezone: timezone.unwrap_or_else(|| "UTC".into()),
    })
}

/// A `[[job.action]]` table; errors start with the field name.
fn parse_action(v: Value) -> Result<Action, FieldError> {
    let Value::Table(mut t) = v else {
        return Err(FieldError::table(format!(
            "expected a table, found {}",
            v.type_str()
        )));
    };
    let kind = take_str(&mut t, "kind")?.ok_or_else(|| FieldError::field("kind", "missing"))?;
    let kind = TaskKind::from_wire(&kind).ok_or_else(|| {
        FieldError::field(
            "kind",
            format!("{kind:?} is not one of backup, restore, prune, verify, list, noop"),
        )
    })?;
    let mandatory = match t.remove("mandatory") {
        None => false,
        Some(Value::Boolean(b)) => b,
        Some(other) => {
            return Err(FieldError::field(
                "mandatory",
                format!("expected true or false, found {}", other.type_str()),
            ))
        }
    };
    let max_retries = match t.remove("max_retries") {
        None => 0,
        Some(Value::Integer(n)) if (0..=i64::from(MAX_RETRIES)).contains(&n) => n as u32,
        Some(other) => {
            return Err(FieldError::field(
                "max_retries",
                format!("expected a whole number from 0 to {MAX_RETRIES}, found {other}"),
            ))
        }
    };
    let retry_interval = take_duration(&mut t, "retry_interval")?.unwrap_or(DEFAULT_RETRY_INTERVAL);
    let spec = serde_json::Value::Object(
        t.into_iter()
            .map(|(k, v)| Ok((k.clone(), to_json(v).map_err(|e| e.under(&k))?)))
            .collect::<Result<_, FieldError>>()?,
    );
    let spec = TaskSpec::from_parts(kind, spec).map_err(FieldError::from_spec)?;
    spec.validate().map_err(FieldError::from_spec)?;
    Ok(Action {
        spec,
        mandatory,
        max_retries,
        retry_interval,
    })
}

/// A TOML value as the JSON the spec types read; TOML datetimes become their text. The error is
/// about the value as a whole (its caller names the field).
fn to_json(v: Value) -> Result<serde_json::Value, FieldError> {
    Ok(match v {
        Value::String(s) => s.into(),
        Value::Integer(n) => n.into(),
        Value::Float(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| FieldError::table(format!("{f} is not a finite number")))?,
        Value::Boolean(b) => b.into(),
        Value::Datetime(d) => d.to_string().into(),
        Value::Array(a) => a
            .into_iter()
            .map(to_json)
            .collect::<Result<Vec<_>, _>>()?
            .into(),
        Value::Table(t) => serde_json::Value::Object(
            t.into_iter()
                .map(|(k, v)| Ok((k, to_json(v)?)))
                .collect::<Result<_, FieldError>>()?,
        ),
    })
}

fn take_str(t: &mut Table, key: &str) -> Result<Option<String>, FieldError> {
    match t.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(FieldError::field(
            key,
            format!("expected a string, found {}", other.type_str()),
        )),
    }
}

fn take_table(t: &mut Table, key: &str) -> Result<Option<Table>, FieldError> {
    match t.remove(key) {
        None => Ok(None),
        Some(Value::Table(t)) => Ok(Some(t)),
        Some(other) => Err(FieldError::field(
            key,
            format!("expected a table, found {}", other.type_str()),
        )),
    }
}

/// A duration written like `"90s"`, `"6h"`, `"1d"`.
fn take_duration(t: &mut Table, key: &str) -> Result<Option<Duration>, FieldError> {
    take_str(t, key)?
        .map(|s| {
            humantime::parse_duration(&s).map_err(|e| {
                FieldError::field(
                    key,
                    format!("{s:?} is not a duration like \"90s\", \"15m\", \"6h\", \"1d\" ({e})"),
                )
            })
        })
        .transpose()
}

/// An instant: RFC 3339 in UTC, as a string or a TOML datetime.
fn take_time(t: &mut Table, key: &str) -> Result<Option<UtcTime>, FieldError> {
    let text = match t.remove(key) {
        None => return Ok(None),
        Some(Value::String(s)) => s,
        Some(Value::Datetime(d)) => d.to_string(),
        Some(other) => {
            return Err(FieldError::field(
                key,
                format!(
                    "expected a time like \"2026-12-01T03:00:00Z\", found {}",
                    other.type_str()
                ),
            ))
        }
    };
    UtcTime::parse(&text)
        .map(Some)
        .map_err(|e| FieldError::field(key, e.to_string()))
}

/// Errors on the first key left over in `t` (all known keys have been taken out).
fn refuse_unknown(t: &Table) -> Result<(), FieldError> {
    match t.keys().next() {
        Some(k) => Err(FieldError::field(k.as_str(), "unknown key")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freezer_contracts::BackupSpec;

    fn parse(text: &str) -> Result<Vec<Job>, Vec<String>> {
        parse_jobs(Path::new("/jobs/t.toml"), text)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    fn one_error(text: &str) -> String {
        let errors = parse(text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    const NOOP: &str = "[[job.action]]\nkind = \"noop\"\n";

    #[test]
    fn the_documented_example_parses() {
        let jobs = parse(include_str!("../../jobs.example.toml")).unwrap();
        let ids: Vec<_> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "web1-home",
                "verify-home",
                "db-cluster-once",
                "restore-web1"
            ]
        );
        let web = &jobs[0];
        assert_eq!(web.target, Target::Node("web1".into()));
        assert_eq!(web.file, Path::new("/jobs/t.toml"));
        assert_eq!(web.expires_after, Duration::from_secs(3600));
        let sched = web.schedule.as_ref().unwrap();
        assert_eq!(sched.when, When::Cron("0 30 2 * * *".into()));
        assert_eq!(sched.timezone, "Europe/Berlin");
        assert_eq!(web.actions.len(), 2);
        let TaskSpec::Backup(BackupSpec {
            max_level,
            exclude,
            storage,
            ..
        }) = &web.actions[0].spec
        else {
            panic!("{:?}", web.actions[0].spec)
        };
        assert_eq!(*max_level, Some(6));
        assert_eq!(exclude, &["*.tmp", "cache"]);
        assert_eq!(storage, &["s3main"]);
        assert_eq!(web.actions[0].max_retries, 2);
        assert_eq!(web.actions[0].retry_interval, Duration::from_secs(300));
        assert!(!web.actions[0].mandatory);
        assert!(web.actions[1].mandatory);
        assert_eq!(web.actions[1].retry_interval, DEFAULT_RETRY_INTERVAL);

        let verify = &jobs[1];
        assert_eq!(verify.target, Target::Pool("verify".into()));
        let s = verify.schedule.as_ref().unwrap();
        assert_eq!(s.when, When::Every(Duration::from_secs(6 * 3600)));
        assert_eq!(
            s.start,
            Some(UtcTime::parse("2026-12-01T00:00:00Z").unwrap())
        );

        let Target::Session(session) = &jobs[2].target else {
            panic!("{:?}", jobs[2].target)
        };
        assert_eq!(session.nodes, ["db1", "db2", "db3"]);
        assert_eq!(session.hold_off, Duration::from_secs(60));
        assert_eq!(session.policy, SessionPolicy::Abort);
        assert!(jobs[3].schedule.is_none());
    }

    #[test]
    fn defaults_durations_and_toml_datetimes() {
        let jobs = parse(&format!(
            "[[job]]\nid = \"a\"\npool = \"p\"\nexpires_after = \"1d\"\n\
             schedule = {{ every = \"90s\", start = 2026-12-01T00:00:00Z, end = \"2026-12-02T00:00:00Z\" }}\n\
             [job.session]\n{NOOP}"
        ));
        // pool and session at once is refused...
        assert!(jobs.unwrap_err()[0].contains("only one of node, pool"));
        let jobs = parse(&format!(
            "[[job]]\nid = \"a\"\npool = \"p\"\nexpires_after = \"1d\"\n\
             schedule = {{ every = \"90s\", start = 2026-12-01T00:00:00Z }}\n{NOOP}\
             [[job]]\nid = \"b\"\n[job.session]\nnodes = [\"n1\", \"n2\"]\npolicy = \"best-effort\"\nhold_off = \"2m\"\n{NOOP}"
        ))
        .unwrap();
        assert_eq!(jobs[0].expires_after, Duration::from_secs(86_400));
        let s = jobs[0].schedule.as_ref().unwrap();
        assert_eq!(s.when, When::Every(Duration::from_secs(90)));
        assert_eq!(s.start.unwrap().to_string(), "2026-12-01T00:00:00Z");
        assert_eq!(s.timezone, "UTC");
        assert_eq!(
            jobs[1].target,
            Target::Session(SessionDef {
                nodes: vec!["n1".into(), "n2".into()],
                hold_off: Duration::from_secs(120),
                policy: SessionPolicy::Proceed,
            })
        );
        assert_eq!(jobs[1].actions[0].spec, TaskSpec::Noop(Default::default()));
    }

    #[test]
    fn errors_name_the_job_and_the_field() {
        let job = |body: &str| format!("[[job]]\nid = \"j1\"\nnode = \"n\"\n{body}");
        for (text, expected) in [
            (job(NOOP).replace("id = \"j1\"\n", ""), "job[0]: id: missing"),
            (job(NOOP).replace("\"j1\"", "\"bad id\""), "job \"bad id\": id: "),
            (job(""), "job \"j1\": no action"),
            (job(&format!("{NOOP}colour = \"red\"\n")), "job \"j1\": action[0].colour: "),
            (job(&format!("colour = 1\n{NOOP}")), "job \"j1\": colour: unknown key"),
            (
                job("[[job.action]]\nkind = \"backup\"\npath_to_backup = \"/x\"\nbackup_name = \"b\"\ncontainer = \"c\"\nstorage = [\"s\"]\nkeep_daily = 3\n"),
                "job \"j1\": action[0].keep_daily: unknown field",
            ),
            (
                job("[[job.action]]\nkind = \"backup\"\npath_to_backup = \"rel\"\nbackup_name = \"b\"\ncontainer = \"c\"\nstorage = [\"s\"]\n"),
                "job \"j1\": action[0].path_to_backup: ",
            ),
            (job("[[job.action]]\nkind = \"explode\"\n"), "job \"j1\": action[0].kind: \"explode\" is not one of"),
            (job("[[job.action]]\nkind = \"noop\"\nmax_retries = -1\n"), "action[0].max_retries: expected a whole number"),
            (job("[[job.action]]\nkind = \"noop\"\nretry_interval = \"soon\"\n"), "action[0].retry_interval: \"soon\" is not a duration"),
            (job(&format!("schedule = {{ cron = \"61 * * * *\" }}\n{NOOP}")), "job \"j1\": schedule.cron: "),
            (job(&format!("schedule = {{ cron = \"* * * * *\", timezone = \"Mars/Base\" }}\n{NOOP}")), "schedule.timezone: \"Mars/Base\" is not an IANA"),
            (job(&format!("schedule = {{ every = \"500ms\" }}\n{NOOP}")), "schedule.every: 500ms is not a whole number"),
            (job(&format!("schedule = {{ every = \"1h\", cron = \"* * * * *\" }}\n{NOOP}")), "job \"j1\": schedule: give only one of cron, every and at"),
            (job(&format!("schedule = {{ at = \"2026-12-01T03:00:00+01:00\" }}\n{NOOP}")), "schedule.at: \"2026-12-01T03:00:00+01:00\" is not in UTC"),
            (job(&format!("schedule = {{ at = \"2026-12-01T03:00:00Z\", end = \"2026-12-02T03:00:00Z\" }}\n{NOOP}")), "schedule.start/end: apply to cron and every"),
            (job(&format!("schedule = {{ every = \"1h\", start = \"2026-12-02T03:00:00Z\", end = \"2026-12-01T03:00:00Z\" }}\n{NOOP}")), "schedule.end: 2026-12-01T03:00:00Z is before start"),
            (job(&format!("schedule = {{ every = \"1h\", timezone = \"UTC\" }}\n{NOOP}")), "schedule.timezone: only a cron schedule"),
            (job(&format!("expires_after = \"0s\"\n{NOOP}")), "expires_after: must be more than 0s"),
            (
                format!("[[job]]\nid = \"j1\"\n[job.session]\nnodes = [\"a\"]\n{NOOP}"),
                "job \"j1\": session.nodes: a session needs two or more nodes",
            ),
            (
                format!("[[job]]\nid = \"j1\"\n[job.session]\nnodes = [\"a\", \"b\"]\npolicy = \"maybe\"\n{NOOP}"),
                "session.policy: \"maybe\" is not",
            ),
            (format!("{}{}", job(NOOP), job(NOOP)), "job \"j1\": defined twice in this file"),
            ("version = 2\n".into(), "unknown top-level key \"version\""),
        ] {
            let e = one_error(&text);
            assert!(e.contains(expected), "{e:?} should contain {expected:?}\n{text}");
        }
        // TOML syntax errors carry the line.
        let e = one_error("[[job]\nid = 1\n");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn every_broken_job_of_a_file_is_reported() {
        let errors = parse(&format!(
            "[[job]]\nid = \"a\"\nnode = \"n\"\n{NOOP}[[job]]\nid = \"b\"\n{NOOP}[[job]]\nid = \"c\"\nnode = \"n\"\n"
        ))
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("job \"b\": no target"));
        assert!(errors[1].starts_with("job \"c\": no action"));
    }

    #[test]
    fn a_hold_off_or_window_past_the_task_bounds_is_refused_at_load() {
        let errors = parse(&format!(
            "[[job]]\nid = \"a\"\n[job.session]\nnodes = [\"n1\", \"n2\"]\nhold_off = \"2d\"\n{NOOP}"
        ))
        .unwrap_err();
        assert!(
            errors[0].contains("hold_off: must be at most 1d"),
            "{errors:?}"
        );
        let errors = parse(&format!(
            "[[job]]\nid = \"a\"\npool = \"p\"\nexpires_after = \"400d\"\n{NOOP}"
        ))
        .unwrap_err();
        assert!(
            errors[0].contains("expires_after: must be at most 366d"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_empty_file_has_no_jobs() {
        assert_eq!(parse("# nothing yet\n").unwrap(), vec![]);
    }
}
