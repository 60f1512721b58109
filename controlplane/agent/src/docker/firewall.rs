//! Docker's firewall and ovnet's devices.
//!
//! A dockerd with its firewall on (the default) sets the `filter` table's FORWARD policy to
//! DROP and loads `br_netfilter`, so that bridged frames go through iptables too. On such a
//! host every frame between a container's veth and the network's TAP on `ovbr<vni>`, and every
//! super-frame the data plane sends whole through its uplink `ovu<port>` (routed by the host),
//! would be dropped: ovnet's networks would stop at the host, and the fast path with them.
//!
//! Docker leaves one chain to its users, `DOCKER-USER`, which FORWARD jumps to first and
//! dockerd never flushes. The agent keeps three rules at its head that hand ovnet's devices
//! back to ovnet: whatever enters or leaves an `ovbr` bridge, and what leaves the uplink, is
//! accepted by Docker's filter (what ovnet itself allows or refuses between networks and out
//! of them is decided in ovnet's own rules, which this does not touch). Nothing else of
//! Docker's is changed. Docker may start after the agent, or restart, so the agent looks
//! again every [`CHECK_EVERY`]; on a host without Docker's chain it does nothing.

use std::time::Duration;

use tokio::process::Command;

/// Docker's chain for its users' rules, in the `filter` table.
pub const CHAIN: &str = "DOCKER-USER";

/// How often the agent checks the chain (Docker may start, or restart, at any time).
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Marks ovnet's rules.
const COMMENT: &str = "ovnet: its devices are ovnet's to filter";

/// The rules, as `iptables` arguments after the chain, in the order they stand in it.
pub fn rules() -> [Vec<&'static str>; 3] {
    let rule = |dir: &'static str, dev: &'static str| {
        vec![
            dir,
            dev,
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-j",
            "ACCEPT",
        ]
    };
    [rule("-i", "ovbr+"), rule("-o", "ovbr+"), rule("-i", "ovu+")]
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No `iptables`, or no `DOCKER-USER` chain: no Docker firewall to mind.
    NoDockerFirewall,
    /// The rules were there already.
    InPlace,
    /// Rules were missing and have been added.
    Added,
}

async fn iptables(args: &[&str]) -> Result<bool, String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running iptables: {e}"))?;
    Ok(out.status.success())
}

/// Puts ovnet's rules at the head of `DOCKER-USER` if the chain exists and lacks them.
pub async fn ensure() -> Result<Found, String> {
    match iptables(&["-S", CHAIN]).await {
        Ok(true) => {}
        // No chain, or no iptables at all: Docker's firewall is not on this host.
        Ok(false) | Err(_) => return Ok(Found::NoDockerFirewall),
    }
    let mut added = false;
    // Inserted last first, each at the head, so they end up in `rules()` order.
    for rule in rules().iter().rev() {
        let mut check = vec!["-C", CHAIN];
        check.extend_from_slice(rule);
        if iptables(&check).await? {
            continue;
        }
        let mut insert = vec!["-I", CHAIN, "1"];
        insert.extend_from_slice(rule);
        if !iptables(&insert).await? {
            return Err(format!(
                "iptables could not add `{}` to {CHAIN}",
                rule.join(" ")
            ));
        }
        added = true;
    }
    Ok(if added { Found::Added } else { Found::InPlace })
}

/// Keeps the rules in place for as long as the agent runs.
pub async fn keep() {
    let mut warned = false;
    loop {
        match ensure().await {
            Ok(Found::Added) => {
                log::info!(
                    "Docker's firewall is on here: ovnet's bridges and uplink are accepted in \
                     its {CHAIN} chain"
                );
                warned = false;
            }
            Ok(_) => warned = false,
            Err(e) if !warned => {
                log::warn!("{e}: ovnet's traffic may be dropped by Docker's FORWARD policy");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_cover_the_bridges_both_ways_and_the_uplink() {
        let r = rules();
        assert_eq!(r[0][..2], ["-i", "ovbr+"]);
        assert_eq!(r[1][..2], ["-o", "ovbr+"]);
        assert_eq!(r[2][..2], ["-i", "ovu+"]);
        for rule in &r {
            assert_eq!(rule[rule.len() - 2..], ["-j", "ACCEPT"]);
            assert!(rule.contains(&COMMENT));
        }
        // The device prefixes are the agent's own.
        assert!(crate::host::bridge_name(256).starts_with("ovbr"));
    }
}
