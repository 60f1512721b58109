//! `ovctl doctor`: checks this host and prints one line per check, `ok`, `warn` or `fail`,
//! each failure with its fix; the exit code is 0 only when nothing fails.
//!
//! - `facts`: what is read from the host namespace and asked of the agent;
//! - `checks`: the verdicts, as pure functions of those facts.

pub mod checks;
pub mod facts;

use std::path::Path;

use checks::Level;

/// Runs every check and prints the report; `Err` with a one-line summary when one failed.
pub async fn run(agent: &Path) -> Result<String, String> {
    let facts = facts::gather(agent).await;
    let report = checks::run(&facts);
    let mut out = String::new();
    for c in &report {
        out.push_str(&c.to_string());
        out.push('\n');
    }
    let count = |l: Level| report.iter().filter(|c| c.level == l).count();
    let (ok, warn, fail) = (count(Level::Ok), count(Level::Warn), count(Level::Fail));
    out.push_str(&format!(
        "{} checks: {ok} ok, {warn} warn, {fail} fail\n",
        report.len()
    ));
    if fail > 0 {
        Err(out)
    } else {
        Ok(out)
    }
}
