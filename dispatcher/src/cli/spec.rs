//! The kinds of `publish`: one subcommand per kind, each parsing straight into the contracts' spec
//! type of that kind (the types `freezer-worker`'s own subcommands parse into), so the dispatcher
//! keeps no copy of the option list and an option the kind does not take is a usage error (exit 2).
//!
//! The spec types read some options from `FREEZER_*` environment variables for the worker's command
//! line (the worker's own settings). A task is an instruction to another machine, so `publish` reads
//! its values from its command line only: [`NoEnv`] drops those variables from the options.

use super::parse_duration;
use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};
use freezer_contracts::{
    BackupSpec, ListSpec, NoopSpec, PruneSpec, RestoreSpec, TaskSpec, VerifySpec,
};
use freezer_dispatcher::Error;
use std::time::Duration;

/// `publish KIND`: the kind, where the task goes and its options.
#[derive(Debug, Clone, Subcommand)]
pub enum KindCommand {
    /// Write a backup (the options of `freezer-worker backup`).
    Backup {
        /// Where the task goes.
        #[command(flatten)]
        target: Target,
        /// The backup's options.
        #[command(flatten)]
        spec: NoEnv<BackupSpec>,
        /// The worker's hooks to run around it.
        #[command(flatten)]
        hooks: Hooks,
    },
    /// Restore a backup (the options of `freezer-worker restore`).
    Restore {
        /// Where the task goes.
        #[command(flatten)]
        target: Target,
        /// The restore's options.
        #[command(flatten)]
        spec: NoEnv<RestoreSpec>,
        /// The worker's hooks to run around it.
        #[command(flatten)]
        hooks: Hooks,
    },
    /// Apply retention (the options of `freezer-worker prune`).
    Prune {
        /// Where the task goes.
        #[command(flatten)]
        target: Target,
        /// The prune's options.
        #[command(flatten)]
        spec: NoEnv<PruneSpec>,
    },
    /// Check stored backups (the options of `freezer-worker verify`).
    Verify {
        /// Where the task goes.
        #[command(flatten)]
        target: Target,
        /// The verification's options.
        #[command(flatten)]
        spec: NoEnv<VerifySpec>,
    },
    /// List backups (the options of `freezer-worker list`).
    List {
        /// Where the task goes.
        #[command(flatten)]
        target: Target,
        /// The listing's options.
        #[command(flatten)]
        spec: NoEnv<ListSpec>,
    },
    /// Do nothing (fleet overhead, tests).
    Noop {
        /// Where the task goes.
        #[command(flatten)]
        target: Target,
        /// How long to sleep.
        #[command(flatten)]
        spec: NoEnv<NoopSpec>,
    },
}

/// Where a published task goes and how long it may wait there: the options of every kind.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").args(["node", "pool"]).required(true)))]
pub struct Target {
    /// Run on this node (its queue `freezer.node.<node>`).
    #[arg(long)]
    pub node: Option<String>,
    /// Run on any worker of this pool (`freezer.pool.<pool>`).
    #[arg(long)]
    pub pool: Option<String>,
    /// The task expires (is reported expired instead of run) if not started within this
    /// (e.g. 30s, 15m, 1h, 2d).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub expires_in: Duration,
    /// Job id recorded with the task.
    #[arg(long, default_value = "manual")]
    pub job_id: String,
}

/// `--hook`: names of hooks in the worker's configuration. A task field that is no option of the
/// worker's command line (a command line runs its hooks itself), so `publish` declares it.
#[derive(Debug, Clone, Default, Args)]
pub struct Hooks {
    /// Hook name from the worker's configuration (repeatable), run around the task in order.
    #[arg(long = "hook", help_heading = TASK_OPTIONS)]
    pub hooks: Vec<String>,
}

impl KindCommand {
    /// Where the task goes.
    pub fn target(&self) -> &Target {
        match self {
            KindCommand::Backup { target, .. }
            | KindCommand::Restore { target, .. }
            | KindCommand::Prune { target, .. }
            | KindCommand::Verify { target, .. }
            | KindCommand::List { target, .. }
            | KindCommand::Noop { target, .. } => target,
        }
    }

    /// The task's spec, checked with the contracts' rules for a task; the error names the
    /// offending option (`--storage`, not `spec.storage`).
    pub fn to_spec(&self) -> Result<TaskSpec, Error> {
        let spec = match self {
            KindCommand::Backup { spec, hooks, .. } => TaskSpec::Backup(BackupSpec {
                hooks: hooks.hooks.clone(),
                ..spec.0.clone()
            }),
            KindCommand::Restore { spec, hooks, .. } => TaskSpec::Restore(RestoreSpec {
                hooks: hooks.hooks.clone(),
                ..spec.0.clone()
            }),
            KindCommand::Prune { spec, .. } => TaskSpec::Prune(spec.0.clone()),
            KindCommand::Verify { spec, .. } => TaskSpec::Verify(spec.0.clone()),
            KindCommand::List { spec, .. } => TaskSpec::List(spec.0.clone()),
            KindCommand::Noop { spec, .. } => TaskSpec::Noop(spec.0.clone()),
        };
        spec.validate()
            .map_err(|e| Error::usage(option_names(&e.to_string())))?;
        Ok(spec)
    }
}

/// Options `S` read from the command line only: the `env = "FREEZER_*"` sources the spec types
/// declare for the worker's command line are removed, so an operator's environment never slips
/// into a published task.
#[derive(Debug, Clone)]
pub struct NoEnv<S>(pub S);

impl<S: FromArgMatches> FromArgMatches for NoEnv<S> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        S::from_arg_matches(m).map(NoEnv)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}

impl<S: Args> Args for NoEnv<S> {
    fn augment_args(cmd: Command) -> Command {
        without_env::<S>(S::augment_args(cmd))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        without_env::<S>(S::augment_args_for_update(cmd))
    }

    fn group_id() -> Option<clap::Id> {
        S::group_id()
    }
}

/// `cmd` with the environment sources of `S`'s options (and of no other) removed, and those
/// options listed under their own heading in `--help`.
fn without_env<S: Args>(cmd: Command) -> Command {
    let own = S::augment_args(Command::new("spec"));
    own.get_arguments()
        .map(|a| a.get_id().clone())
        .fold(cmd, |cmd, id| {
            cmd.mut_arg(id, |a| a.env(None).help_heading(TASK_OPTIONS))
        })
}

/// The `--help` heading of a kind's own options.
const TASK_OPTIONS: &str = "Task options";

/// Rewrites `spec.path_to_backup`-style field paths in a contracts error as `--path-to-backup`.
fn option_names(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find("spec.") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 5..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push_str("--");
        out.push_str(&tail[..end].replace('_', "-"));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use freezer_contracts::TaskKind;

    /// `publish KIND ...` on its own, for the tests.
    #[derive(Debug, Parser)]
    struct Publish {
        #[command(subcommand)]
        kind: KindCommand,
    }

    fn parse(args: &[&str]) -> Result<KindCommand, clap::Error> {
        Publish::try_parse_from(std::iter::once("publish").chain(args.iter().copied()))
            .map(|p| p.kind)
    }

    #[test]
    fn specs_are_read_with_the_contracts_rules() {
        let k = parse(&[
            "backup",
            "--node",
            "a",
            "--path-to-backup",
            "/etc",
            "--backup-name",
            "etc",
            "--container",
            "c",
            "--storage",
            "s3",
            "--hook",
            "dump",
        ])
        .unwrap();
        let spec = k.to_spec().unwrap();
        assert_eq!(spec.kind(), TaskKind::Backup);
        let TaskSpec::Backup(b) = spec else {
            unreachable!()
        };
        assert_eq!(b.hooks, ["dump"]);
        assert_eq!(k.target().node.as_deref(), Some("a"));

        // An option of another kind, a missing required option: usage errors.
        let e = parse(&["noop", "--node", "a", "--keep-last", "2"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--keep-last"), "{e}");
        let e = parse(&["backup", "--node", "a", "--backup-name", "x"]).unwrap_err();
        assert!(e.to_string().contains("--path-to-backup"), "{e}");
        assert!(parse(&["prune", "--storage", "s"]).is_err(), "no target");

        // A rule of a task: a storage is named, paths are absolute.
        let k = parse(&["list", "--pool", "p"]).unwrap();
        let e = k.to_spec().unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--storage"), "{e}");
        let k = parse(&[
            "restore",
            "--pool",
            "p",
            "--backup-name",
            "x",
            "--storage",
            "s",
            "--restore-abs-path",
            "rel",
        ])
        .unwrap();
        assert!(k
            .to_spec()
            .unwrap_err()
            .to_string()
            .contains("--restore-abs-path"));

        let k = parse(&["noop", "--node", "a", "--sleep-ms", "300"]).unwrap();
        assert_eq!(
            k.to_spec().unwrap(),
            TaskSpec::Noop(NoopSpec { sleep_ms: 300 })
        );
        assert_eq!(option_names("spec.keep_last: bad"), "--keep-last: bad");
    }

    #[test]
    fn no_option_of_a_kind_reads_the_environment() {
        use clap::CommandFactory;
        let cmd = Publish::command();
        let kinds: Vec<_> = cmd.get_subcommands().collect();
        assert_eq!(kinds.len(), 6);
        for kind in kinds {
            for arg in kind.get_arguments() {
                assert_eq!(
                    arg.get_env(),
                    None,
                    "{} --{}",
                    kind.get_name(),
                    arg.get_id()
                );
            }
        }
        // The worker's CLI keeps them.
        let worker = BackupSpec::augment_args(Command::new("backup"));
        assert!(worker.get_arguments().any(|a| a.get_env().is_some()));
    }
}
