//! `ovnet-cni`: the CNI plugin binary. A container runtime runs it with `CNI_COMMAND` and the
//! other CNI variables in the environment and the network configuration on stdin; it prints a
//! result or an error result on stdout and exits 0 or 1. See the library for what it does.

use std::io::Read;
use std::process::ExitCode;

use ovnet_cni::config::MAX_CONFIG;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    // One byte past the limit, so an oversized configuration is refused rather than cut.
    let read = std::io::stdin()
        .take(MAX_CONFIG as u64 + 1)
        .read_to_end(&mut stdin)
        .map(|_| stdin);
    let reply = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(ovnet_cni::run(|k| std::env::var(k).ok(), read)),
        Err(e) => {
            eprintln!("ovnet-cni: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !reply.stdout.is_empty() {
        println!("{}", reply.stdout);
    }
    if reply.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
