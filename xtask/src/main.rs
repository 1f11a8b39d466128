//! `cargo xtask …`: the project's developer tasks.
//!
//! Everything a developer or CI needs beyond a plain `cargo build` lives here, so that
//! `.ci/run` stays a one-liner that a user can run too: `setup` installs the eBPF
//! toolchain and the test tools, `test` runs the whole suite as root, `lint` runs
//! rustfmt and clippy, and `demo` shows enforcement in a throw-away lab.

mod agent;
mod cleanup;
mod demo;
mod lab;
mod probe;
mod setup;
mod summary;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer tasks for sgmirror.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what the eBPF build and the tests need (idempotent; root when installing).
    ///
    /// The eBPF programs build either with Debian's rustc-web and its prebuilt `core`
    /// for bpfel-unknown-none, or with a rustup nightly that has the rust-src
    /// component; both link with bpf-linker. When neither is complete, the Debian
    /// path is installed, with bpf-linker built against Debian's LLVM 22.
    Setup {
        /// Only report what is there; exit with status 1 if anything is missing.
        #[arg(long)]
        check: bool,
    },
    /// Run setup, then the whole test suite (`cargo test --workspace`) as root.
    Test {
        /// Run the long kernel differential test (1 000 000 random packets).
        #[arg(long)]
        full: bool,
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Run setup, then `cargo fmt --check` and `cargo clippy -D warnings`.
    Lint,
    /// Run setup, build sgmirror, and show it enforcing the web-server example in a
    /// throw-away network-namespace lab (root).
    Demo {
        /// Run the lab and the traffic without the agent (everything is then delivered);
        /// checks the lab itself.
        #[arg(long, hide = true)]
        no_agent: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { check } => setup::run(check),
        Command::Test { full, cargo_args } => test::run_tests(full, &cargo_args),
        Command::Lint => test::run_lint(),
        Command::Demo { no_agent } => demo::run(!no_agent),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn extra_cargo_test_args_follow_the_double_dash() {
        let cli = Cli::try_parse_from(["xtask", "test", "--full", "--", "-p", "sgmirror-policy"]).unwrap();
        match cli.command {
            Command::Test { full, cargo_args } => {
                assert!(full);
                assert_eq!(cargo_args, ["-p", "sgmirror-policy"]);
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
