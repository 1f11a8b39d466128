//! `cargo xtask …`: the project's developer tasks.
//!
//! Everything a developer or CI needs beyond a plain `cargo build` lives here, so that
//! `.ci/run` stays a one-liner that a user can run too: `setup` installs the eBPF
//! toolchain and the test tools, `test` runs the whole suite as root, `lint` runs
//! rustfmt and clippy, `demo` shows enforcement in a throw-away lab, and `bench`
//! measures it.

mod agent;
mod bench;
mod cleanup;
mod demo;
mod lab;
mod moto_venv;
mod package;
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
    /// Run setup, build the benchmark and the agent in release mode, and run the
    /// benchmark pinned to CPU 0 (root): per-packet cost against reference programs,
    /// control-plane costs, the drop log's cost, drop rates on veth against nftables and
    /// ipset, growth with the policy's size. Writes docs/bench/.
    Bench {
        /// A tiny run (seconds; no live traffic), written under the target directory.
        #[arg(long)]
        smoke: bool,
        /// Extra arguments for sgmirror-bench (e.g. `--only p1,p4`), after `--`.
        #[arg(last = true)]
        bench_args: Vec<String>,
    },
    /// Build sgmirror (release) and install it as a service: the binary in
    /// PREFIX/bin, the systemd unit in /etc/systemd/system, the example configuration
    /// in /etc/sgmirror/config.toml (an existing one is kept). Runs `systemctl
    /// daemon-reload` when systemd is running and there is no --destdir; does not
    /// enable or start the unit.
    Install {
        /// Install under this directory instead of / (for staging; no root needed).
        #[arg(long, value_name = "DIR")]
        destdir: Option<std::path::PathBuf>,
        /// Prefix of the binary's directory.
        #[arg(long, value_name = "PREFIX", default_value = "/usr/local")]
        prefix: String,
        /// Install the debug build instead of the release build.
        #[arg(long)]
        debug: bool,
    },
    /// Build the Debian package target/debian/sgmirror_<version>_<arch>.deb: binary,
    /// enabled systemd unit, configuration (a conffile, starting in audit mode); purge
    /// removes the configuration, the unit's enablement and the pinned state. Prints
    /// the package's path on stdout.
    Deb {
        /// Package the debug build (stripped) instead of the release build.
        #[arg(long)]
        debug: bool,
        /// Write the package here instead of target/debian.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
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
        Command::Bench { smoke, bench_args } => bench::run(smoke, &bench_args),
        Command::Install { destdir, prefix, debug } => {
            package::install(destdir.as_deref(), &prefix, profile(debug))
        }
        Command::Deb { debug, out_dir } => package::deb(profile(debug), out_dir.as_deref()).map(|deb| {
            println!("{}", deb.display());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn profile(debug: bool) -> package::Profile {
    if debug { package::Profile::Debug } else { package::Profile::Release }
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
    fn bench_takes_smoke_and_passes_extra_arguments_through() {
        let cli = Cli::try_parse_from(["xtask", "bench", "--smoke", "--", "--only", "p1"]).unwrap();
        match cli.command {
            Command::Bench { smoke, bench_args } => {
                assert!(smoke);
                assert_eq!(bench_args, ["--only", "p1"]);
            }
            other => panic!("parsed as {other:?}"),
        }
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
