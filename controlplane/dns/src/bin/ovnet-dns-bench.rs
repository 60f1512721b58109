//! `ovnet-dns-bench`: DNS load against one server, for the benchmark harness. Prints one line
//! of `key=value` pairs, or a JSON object with `--json`.
//!
//! ```text
//! ovnet-dns-bench --target 10.0.0.1:53 --name web --name db --seconds 5 --concurrency 8
//! ovnet-dns-bench --target 10.0.0.1:53 --name web --rate 2000 --json
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ovnet_dns::bench::{run, LoadOptions};

/// DNS load generator: UDP A queries, closed loop; reports queries/s and latency.
#[derive(Debug, Parser)]
#[command(name = "ovnet-dns-bench", version)]
struct Args {
    /// Server to query, ADDR:PORT.
    #[arg(long)]
    target: SocketAddr,
    /// Name to query (type A); repeat for several, queried round-robin.
    #[arg(long = "name", required = true)]
    names: Vec<String>,
    /// Queries per second over all workers; 0 for as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Workers (queries outstanding at once).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Milliseconds to wait for one answer before counting the query as lost.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Print JSON instead of key=value.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        eprintln!("ovnet-dns-bench: --seconds must be a positive number");
        return ExitCode::from(2);
    }
    let opts = LoadOptions {
        target: args.target,
        names: args.names,
        rate: (args.rate > 0).then_some(args.rate),
        duration: Duration::from_secs_f64(args.seconds),
        concurrency: args.concurrency,
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ovnet-dns-bench: start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = match runtime.block_on(run(&opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ovnet-dns-bench: {}: {e}", opts.target);
            return ExitCode::FAILURE;
        }
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if args.json {
        let v = serde_json::json!({
            "target": opts.target.to_string(),
            "sent": r.sent,
            "answered": r.answered,
            "not_noerror": r.not_noerror,
            "lost": r.lost,
            "seconds": r.elapsed.as_secs_f64(),
            "qps": r.qps,
            "p50_us": us(r.p50),
            "p99_us": us(r.p99),
            "max_us": us(r.max),
        });
        println!("{v}");
    } else {
        println!(
            "sent={} answered={} not_noerror={} lost={} seconds={:.3} qps={:.0} p50_us={:.0} p99_us={:.0} max_us={:.0}",
            r.sent,
            r.answered,
            r.not_noerror,
            r.lost,
            r.elapsed.as_secs_f64(),
            r.qps,
            us(r.p50),
            us(r.p99),
            us(r.max)
        );
    }
    if r.answered == 0 {
        eprintln!("ovnet-dns-bench: no answer from {}", opts.target);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
