//! The command line of `freezer-dispatcher` (ARCHITECTURE.md §6): global options (configuration file,
//! then `FREEZER_*` environment variables, then flags) and one module per group of commands.

pub mod job_run;
pub mod publish;
pub mod serve;
pub mod show;
pub mod spec;

use clap::{Args, Parser, Subcommand};
use freezer_dispatcher::config::{DispatcherConfig, DispatcherSection};
use freezer_dispatcher::Error;
use std::path::PathBuf;
use std::time::Duration;

/// Command line of `freezer-dispatcher`.
#[derive(Debug, Parser)]
#[command(
    name = "freezer-dispatcher",
    version,
    about = "Schedules Freezer jobs, publishes their tasks to RabbitMQ and tracks results",
    propagate_version = true
)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command; each overrides the configuration file.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Configuration file (default /etc/freezer/dispatcher.toml, if it exists).
    #[arg(long, global = true, env = "FREEZER_DISPATCHER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Redis URL.
    #[arg(long, global = true, env = "FREEZER_REDIS_URL")]
    pub redis_url: Option<String>,
    /// RabbitMQ URL.
    #[arg(long, global = true, env = "FREEZER_AMQP_URL")]
    pub amqp_url: Option<String>,
    /// Prefix of the Redis keys (the workers' `key_prefix`).
    #[arg(long, global = true, env = "FREEZER_KEY_PREFIX")]
    pub key_prefix: Option<String>,
}

impl Global {
    /// The configuration file with the overrides applied.
    pub fn settings(&self) -> Result<DispatcherSection, Error> {
        let mut s = DispatcherConfig::load(self.config.as_deref())?.dispatcher;
        if let Some(u) = &self.redis_url {
            s.redis_url = u.clone();
        }
        if let Some(u) = &self.amqp_url {
            s.amqp_url = u.clone();
        }
        if let Some(p) = &self.key_prefix {
            s.key_prefix = p.clone();
        }
        Ok(s)
    }
}

/// The dispatcher's subcommands, one per role it plays (ARCHITECTURE.md §6).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the dispatcher service: load job files, schedule runs, publish tasks, consume events,
    /// retry and drive sessions.
    Serve,
    /// Publish one task now, without the scheduler.
    Publish(Box<publish::PublishArgs>),
    /// Show a task, a run or a job's history (by id), or the runs in progress.
    Status {
        /// A task id, run id or job id.
        id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the job definitions, when they fire next and last fired, and broken job files
    /// (exit 1 when a file is broken).
    Jobs {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show sessions and who has joined their barriers.
    Sessions {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the workers, live and stale, with their pools, versions and running tasks.
    Workers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Reads `30s`, `15m`, `1h`, `2d` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| Error::usage(format!("{s:?} is not a duration (e.g. 30s, 15m, 1h, 2d)")))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => {
            return Err(Error::usage(format!(
                "{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            )))
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// Runs a parsed command line; the exit code.
pub async fn run(cli: Cli) -> Result<i32, Error> {
    match &cli.command {
        Command::Serve => serve::serve(cli.global.settings()?).await,
        Command::Jobs { json } => serve::jobs(&cli.global.settings()?, *json).await,
        Command::Publish(args) => publish::run(&cli.global.settings()?, args).await,
        Command::Status { id, json } => {
            show::status(&cli.global.settings()?, id.as_deref(), *json).await
        }
        Command::Sessions { json } => show::sessions(&cli.global.settings()?, *json).await,
        Command::Workers { json } => show::workers(&cli.global.settings()?, *json).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_parse() {
        for args in [
            &["freezer-dispatcher", "serve"][..],
            &["freezer-dispatcher", "status", "x", "--json"],
            &["freezer-dispatcher", "workers", "--json"],
            &["freezer-dispatcher", "sessions"],
            &["freezer-dispatcher", "jobs"],
            &[
                "freezer-dispatcher",
                "publish",
                "noop",
                "--node",
                "a",
                "--wait",
                "--timeout",
                "5s",
            ],
            &[
                "freezer-dispatcher",
                "publish",
                "--job",
                "j",
                "--wait",
                "--timeout",
                "90s",
            ],
            &["freezer-dispatcher", "publish", "--job", "j", "--json"],
            &[
                "freezer-dispatcher",
                "publish",
                "noop",
                "--pool",
                "p",
                "--sleep-ms",
                "300",
                "--expires-in",
                "30s",
                "--job-id",
                "x",
                "--json",
            ],
            &[
                "freezer-dispatcher",
                "--redis-url",
                "redis://x/",
                "publish",
                "prune",
                "--pool",
                "p",
                "--container",
                "c",
                "--storage",
                "s",
                "--keep-last",
                "3",
            ],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    #[test]
    fn usage_errors_are_reported_with_exit_code_2() {
        for args in [
            &["freezer-dispatcher"][..],
            &["freezer-dispatcher", "frobnicate"],
            &["freezer-dispatcher", "serve", "--no-such-flag"],
            &["freezer-dispatcher", "publish", "noop"],
            &["freezer-dispatcher", "publish"],
            &[
                "freezer-dispatcher",
                "publish",
                "--job",
                "j",
                "noop",
                "--node",
                "a",
            ],
            &["freezer-dispatcher", "publish", "--job", "j", "--node", "a"],
            &[
                "freezer-dispatcher",
                "publish",
                "--job",
                "j",
                "--timeout",
                "5s",
            ],
            &[
                "freezer-dispatcher",
                "publish",
                "noop",
                "--node",
                "a",
                "--keep-last",
                "2",
            ],
            &[
                "freezer-dispatcher",
                "publish",
                "list",
                "--node",
                "a",
                "--storage",
                "s",
                "--path-to-backup",
                "/x",
            ],
            &[
                "freezer-dispatcher",
                "publish",
                "noop",
                "--node",
                "a",
                "--pool",
                "p",
            ],
            &[
                "freezer-dispatcher",
                "publish",
                "noop",
                "--node",
                "a",
                "--timeout",
                "5s",
            ],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
    }
}
