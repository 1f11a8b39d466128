//! The `sgmirror` binary: the command-line edge over the policy pipeline
//! (`sgmirror-policy`) and the kernel data plane (`sgmirror-dataplane`).

mod args;
mod bindings;
mod bpffs;
mod cmd_compile;
mod cmd_detach;
mod cmd_explain;
mod cmd_lint;
mod cmd_run;
mod cmd_snapshot;
mod cmd_status;
mod config;
mod drop_pump;
mod droplog;
mod enforcer;
mod lifecycle;
mod links;
mod metrics;
mod notify;
mod packet_arg;
mod preflight;
#[cfg(feature = "aws")]
mod source_aws;
mod state;
mod summary;
mod trace;
mod xdp_query;

use std::process::ExitCode;

use anyhow::Context;

use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let matches = args::Cli::command().get_matches();
    let cli = args::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging();
    if !matches!(cli.command, args::Command::Run(_)) {
        // The one-shot commands write results to stdout; when a reader such as `head`
        // closes the pipe early, end quietly as other Unix tools do instead of
        // panicking in `println!`. `run` keeps ignoring SIGPIPE: a closed stdout must
        // never stop enforcement.
        // SAFETY: restoring the default disposition of a signal, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        // The configuration file fills in what the command line did not give.
        args::Command::Run(a) => matches
            .subcommand_matches("run")
            .context("internal: no matches for run")
            .and_then(|m| config::resolve(&a, m))
            .and_then(|a| cmd_run::run(&a)),
        args::Command::Compile(a) => cmd_compile::run(&a),
        args::Command::Explain(a) => cmd_explain::run(&a),
        args::Command::Lint(a) => cmd_lint::run(&a),
        args::Command::Status(a) => cmd_status::run(&a),
        args::Command::Detach(a) => cmd_detach::run(&a),
        args::Command::Snapshot(a) => cmd_snapshot::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line: "loading snapshot x: $.a: problem".
            eprintln!("sgmirror: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, never stdout, so results can be piped.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
