//! The `sgmirror` binary: the command-line edge over the policy pipeline
//! (`sgmirror-policy`) and the kernel data plane (`sgmirror-dataplane`).

mod args;
mod bindings;
mod bpffs;
mod cmd_compile;
mod cmd_explain;
mod cmd_lint;
mod cmd_run;
#[allow(dead_code, reason = "wired into the run loop with the kernel drop log")]
mod droplog;
mod enforcer;
mod links;
mod metrics;
mod packet_arg;
mod summary;
mod trace;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_logging();
    let result = match cli.command {
        args::Command::Run(a) => cmd_run::run(&a),
        args::Command::Compile(a) => cmd_compile::run(&a),
        args::Command::Explain(a) => cmd_explain::run(&a),
        args::Command::Lint(a) => cmd_lint::run(&a),
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
