//! `freezer-dispatcher publish KIND --node N | --pool P [options] [--wait]`: one task now,
//! published with a confirm. `publish --job ID [--wait]` asks the leading dispatcher for one run
//! of a job of its job files now ([`super::job_run`]). With `--wait` the events are subscribed to before publishing (an
//! exclusive queue bound to `task.<kind>.*`), progress goes to stderr, and the exit code is the
//! task's: its own on success or failure, 1 when it expired or was rejected or the wait timed
//! out, 130 on Ctrl-C.

use super::parse_duration;
use super::spec::KindCommand;
use clap::Args;
use freezer_contracts::{node_queue, pool_queue, Event, EventStatus, TaskEnvelope};
use freezer_dispatcher::bus::Bus;
use freezer_dispatcher::config::DispatcherSection;
use freezer_dispatcher::runs::{self, wait};
use freezer_dispatcher::Error;
use freezer_fleet::amqp;
use serde_json::json;
use std::io::Write;
use std::time::Duration;

/// `publish` options: a kind with its options, or `--job`; the waiting options go with either.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub struct PublishArgs {
    /// What to run, where, and its options.
    #[command(subcommand)]
    pub kind: Option<KindCommand>,
    /// Instead of one task: one run of this job of the job files, now, by the leading
    /// dispatcher (with its actions, retries and session).
    #[arg(long)]
    pub job: Option<String>,
    /// Wait for the task's outcome and exit with its exit code.
    #[arg(long, global = true)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 1; the task may still run).
    #[arg(long, global = true, value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Runs `publish`; the exit code.
pub async fn run(cfg: &DispatcherSection, args: &PublishArgs) -> Result<i32, Error> {
    let kind = match (&args.job, &args.kind) {
        (Some(job), None) => {
            return super::job_run::run(cfg, job, args.wait, args.timeout, args.json).await
        }
        (None, Some(kind)) => kind,
        (Some(_), Some(_)) => return Err(Error::usage("--job takes no KIND")),
        (None, None) => return Err(Error::usage("publish needs a KIND or --job")),
    };
    let spec = kind.to_spec()?;
    let target = kind.target();
    let queue = match (&target.node, &target.pool) {
        (Some(n), _) => {
            freezer_contracts::check_ident("--node", n)?;
            node_queue(n)
        }
        (None, Some(p)) => {
            freezer_contracts::check_ident("--pool", p)?;
            pool_queue(p)
        }
        (None, None) => return Err(Error::usage("--node or --pool is required")),
    };
    let now = freezer_fleet::clock::now();
    let id = freezer_dispatcher::new_task_id();
    let run_id = format!("manual.{}", id.unix_ms());
    let mut task = TaskEnvelope::new(id, &target.job_id, run_id, spec);
    task.expires_at = Some(freezer_dispatcher::add(now, target.expires_in));
    task.validate()?;

    let mut redis = runs::redis(&cfg.redis_url)?;
    let conn = amqp::connect(&cfg.amqp_url).await?;
    let bus = Bus::new();
    bus.attach(&conn).await?;
    let mut events = bus.subscribe();
    let _feed = if args.wait {
        let pattern = format!("task.{}.*", task.kind());
        let (ch, q) = Bus::private_events_queue(&conn, &pattern).await?;
        let b = bus.clone();
        Some(tokio::spawn(async move {
            let _ = b.feed(&ch, &q).await;
        }))
    } else {
        None
    };
    let keys = cfg.keys();
    bus.publish_task(&mut redis, &keys, &queue, &task, Duration::from_secs(30))
        .await?;
    if !args.wait {
        if args.json {
            println!(
                "{}",
                json!({ "task_id": task.task_id, "kind": task.kind(), "queue": queue })
            );
        } else {
            println!("{}", task.task_id);
        }
        amqp::close(conn).await;
        return Ok(0);
    }
    if !args.json {
        println!("{}", task.task_id);
        let _ = std::io::stdout().flush();
    }
    eprintln!(
        "published task {} ({}) to {queue}; waiting",
        task.task_id,
        task.kind()
    );
    let watch = wait::Watch {
        redis: &mut redis,
        keys: &keys,
        events: &mut events,
        margin: Duration::from_secs(30),
        poll: Duration::from_secs(1),
    };
    let waiting = wait::outcome(watch, &task, progress_line);
    let timeout = async {
        match args.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        o = waiting => o,
        _ = tokio::signal::ctrl_c() => {
            return Err(Error::Interrupted(format!(
                "interrupted: task {} goes on without this command",
                task.task_id
            )));
        }
        _ = timeout => {
            if args.json {
                println!("{}", json!({ "task_id": task.task_id, "status": "timeout", "exit_code": 1 }));
            }
            return Err(Error::Timeout(format!(
                "timed out waiting for task {} (it may still run)",
                task.task_id
            )));
        }
    };
    if outcome.event.is_none() {
        eprintln!(
            "task {} {}: {}",
            task.task_id,
            outcome.status,
            outcome.reason.as_deref().unwrap_or("")
        );
    }
    let code = if outcome.succeeded() {
        outcome.exit_code
    } else {
        outcome.exit_code.max(1)
    };
    let result = match outcome.event.as_ref().map(|e| &e.status) {
        Some(EventStatus::Succeeded { result, .. }) => result.clone(),
        _ => serde_json::Value::Null,
    };
    if args.json {
        println!(
            "{}",
            json!({
                "task_id": task.task_id,
                "status": outcome.status,
                "exit_code": code,
                "node": outcome.node,
                "reason": outcome.reason,
                "result": result,
            })
        );
    }
    amqp::close(conn).await;
    Ok(code)
}

/// One stderr line per event of the task.
fn progress_line(e: &Event) {
    let id = e
        .task_id
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_default();
    match &e.status {
        EventStatus::Started => eprintln!("task {id} started on {}", e.node),
        EventStatus::Progress {
            entries,
            files,
            bytes_read,
            bytes_written,
        } => eprintln!(
            "progress: {entries} entries, {files} files, {bytes_read} bytes read, {bytes_written} bytes written"
        ),
        EventStatus::Succeeded { exit_code, .. } => {
            eprintln!("task {id} succeeded on {} (exit {exit_code})", e.node)
        }
        EventStatus::Failed {
            exit_code, reason, ..
        } => eprintln!("task {id} failed on {} (exit {exit_code}): {reason}", e.node),
        EventStatus::Expired { expires_at } => {
            eprintln!("task {id} expired on {} (not started by {expires_at})", e.node)
        }
        EventStatus::Rejected { reason, .. } => {
            eprintln!("task {id} rejected by {}: {reason}", e.node)
        }
    }
}
