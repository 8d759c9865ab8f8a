//! `freezer-dispatcher`: turns job definitions into tasks on RabbitMQ and follows their results
//! (DESIGN.md §1, §4, §5).
//!
//! This is a skeleton: the command line is in place so that its shape (DESIGN.md §6) is fixed and
//! `--help` describes what each subcommand is for, but every subcommand still reports that it is not
//! implemented and exits with code 1. The dispatcher itself is a later issue.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command line of `freezer-dispatcher`.
#[derive(Debug, Parser)]
#[command(
    name = "freezer-dispatcher",
    version,
    about = "Schedules Freezer jobs, publishes their tasks to RabbitMQ and tracks results (not implemented yet)",
    propagate_version = true
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The dispatcher's subcommands, one per role it plays (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum Command {
    /// Run the dispatcher service: load job files, schedule runs, publish tasks, consume events,
    /// retry and drive sessions.
    Serve,
    /// Publish one task (or one run of a job) now, without the scheduler.
    Publish,
    /// Show the state of a task, a run or a job.
    Status,
    /// List the job definitions and their last results.
    Jobs,
    /// Show sessions and who has joined their barriers.
    Sessions,
    /// List the workers alive, with their pools, versions and running tasks.
    Workers,
}

impl Command {
    /// The subcommand's name as typed, for messages.
    fn name(self) -> &'static str {
        match self {
            Command::Serve => "serve",
            Command::Publish => "publish",
            Command::Status => "status",
            Command::Jobs => "jobs",
            Command::Sessions => "sessions",
            Command::Workers => "workers",
        }
    }
}

/// The message every subcommand prints until the dispatcher is written, so users see plainly that the
/// command exists but does nothing yet, rather than a silent success.
fn not_implemented_message(command: Command) -> String {
    format!(
        "freezer-dispatcher {}: not implemented yet (see issue: the dispatcher)",
        command.name()
    )
}

/// Runs a parsed command line; returns the process exit code (DESIGN.md §6: 1 is failure).
fn run(cli: &Cli) -> ExitCode {
    eprintln!("{}", not_implemented_message(cli.command));
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help/--version, as DESIGN.md §6 wants.
    run(&Cli::parse())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    const ALL: [Command; 6] = [
        Command::Serve,
        Command::Publish,
        Command::Status,
        Command::Jobs,
        Command::Sessions,
        Command::Workers,
    ];

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_parses_by_its_name() {
        for command in ALL {
            let cli = Cli::try_parse_from(["freezer-dispatcher", command.name()]).unwrap();
            assert_eq!(cli.command, command);
        }
    }

    #[test]
    fn usage_errors_are_reported_with_exit_code_2() {
        for args in [
            &["freezer-dispatcher"][..],
            &["freezer-dispatcher", "frobnicate"],
            &["freezer-dispatcher", "serve", "--no-such-flag"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn version_and_help_are_available() {
        for flag in ["--version", "--help"] {
            let err = Cli::try_parse_from(["freezer-dispatcher", flag]).unwrap_err();
            assert_eq!(err.exit_code(), 0, "{flag}");
        }
        let help = Cli::command().render_long_help().to_string();
        for command in ALL {
            assert!(help.contains(command.name()), "{}", command.name());
        }
    }

    #[test]
    fn not_implemented_message_names_the_command() {
        assert_eq!(
            not_implemented_message(Command::Publish),
            "freezer-dispatcher publish: not implemented yet (see issue: the dispatcher)"
        );
        assert_eq!(
            run(&Cli {
                command: Command::Jobs
            }),
            ExitCode::FAILURE
        );
    }
}
