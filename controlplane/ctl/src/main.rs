//! `ovctl`: the operator's CLI for ovnet, in the manner of `docker network` with the overlay
//! driver. It talks to the local `ovnet-agent` over gRPC on a unix socket and holds no state.
//!
//! - [`cli`]: the command line (clap) and the checks made before calling the agent;
//! - [`client`]: the connection to the agent, timeouts, and error messages;
//! - [`commands`]: one function per command;
//! - [`mod@format`]: what is printed (tables, inspect JSON, stats), as pure functions;
//! - [`doctor`]: `ovctl doctor`, the host's checks.
//!
//! Errors are one line on stderr, `Error: <message>`, with exit code 1 (clap's usage errors
//! keep its exit code 2).

#![forbid(unsafe_code)]

mod cli;
mod client;
mod commands;
mod doctor;
mod format;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(commands::Failure(errors)) => {
            for e in errors {
                eprintln!("Error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
