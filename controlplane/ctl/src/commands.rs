//! Runs one parsed command: checks its arguments, calls the agent, prints the result.
//!
//! Arguments are checked before connecting, so a bad command line is reported the same way
//! whether the agent runs or not. Output goes through [`crate::format`]; errors come back as
//! [`Failure`] for `main` to print.

use std::io::Write;

use ovnet_proto::{
    AddVtepRequest, ConnectRequest, CreateNetworkRequest, DataplaneRequest, DisconnectRequest,
    InspectNetworkRequest, ListNetworksRequest, ListNodesRequest, ListVtepsRequest,
    RemoveNetworkRequest, RemoveVtepRequest, StatsRequest,
};
use tonic::Code;

use crate::cli::{
    check_driver, parse_labels, parse_publish, parse_vtep, Cli, Command, NetworkCmd, NodeCmd,
    VtepCmd,
};
use crate::client::{Agent, CliError};
use crate::format;

/// The errors a command ended with, in order; each is printed as `Error: <message>`.
///
/// Commands over several networks (`inspect`, `rm`) do what they can and report every failure,
/// like docker.
#[derive(Debug)]
pub struct Failure(pub Vec<CliError>);

impl From<CliError> for Failure {
    fn from(e: CliError) -> Self {
        Failure(vec![e])
    }
}

/// Writes to stdout; a closed pipe (`ovctl network ls | head -1`) is not an error.
fn out(s: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(s.as_bytes()).and_then(|()| stdout.flush());
}

/// Runs `cli`.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let path = cli.agent;
    match cli.command {
        Command::Network(cmd) => network(&path, cmd).await,
        Command::Node(NodeCmd::Ls) => {
            let agent = Agent::connect(&path).await?;
            let resp = agent
                .call(agent.client().list_nodes(ListNodesRequest {}))
                .await?;
            out(&format::node_ls(&resp.nodes));
            Ok(())
        }
        Command::Stats(args) => {
            let agent = Agent::connect(&path).await?;
            let resp = agent
                .call(agent.client().stats(StatsRequest {
                    network: args.network,
                }))
                .await?;
            if args.json {
                out(&format::stats_json(&resp.networks));
            } else {
                out(&format::stats(&resp.networks));
            }
            Ok(())
        }
        Command::Doctor => match crate::doctor::run(&path).await {
            Ok(report) => {
                out(&report);
                Ok(())
            }
            Err(report) => {
                out(&report);
                Err(CliError::new("some checks failed (see above)").into())
            }
        },
        Command::Dataplane(args) => {
            let agent = Agent::connect(&path).await?;
            let resp = agent
                .call(agent.client().dataplane(DataplaneRequest {}))
                .await?;
            if args.json {
                out(&format::dataplane_json(&resp));
            } else {
                out(&format::dataplane(&resp));
            }
            Ok(())
        }
    }
}

async fn network(path: &std::path::Path, cmd: NetworkCmd) -> Result<(), Failure> {
    match cmd {
        NetworkCmd::Create(a) => {
            check_driver(&a.driver)?;
            let labels = parse_labels(&a.labels)?;
            let agent = Agent::connect(path).await?;
            let (net, warnings) = agent
                .call_warned(agent.client().create_network(CreateNetworkRequest {
                    name: a.name,
                    driver: a.driver,
                    subnet: a.subnet,
                    gateway: a.gateway,
                    vni: a.vni,
                    mtu: a.mtu,
                    labels,
                    internal: a.internal,
                }))
                .await?;
            // As docker prints its API's warnings: on stderr, before the result.
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
            out(&format!("{}\n", net.id));
            Ok(())
        }
        NetworkCmd::Ls(a) => {
            let agent = Agent::connect(path).await?;
            let resp = agent
                .call(agent.client().list_networks(ListNetworksRequest {}))
                .await?;
            out(&format::network_ls(&resp.networks, a.quiet, a.no_trunc));
            Ok(())
        }
        NetworkCmd::Inspect { networks } => {
            let agent = Agent::connect(path).await?;
            let mut found = Vec::new();
            let mut errors = Vec::new();
            for name in networks {
                let req = InspectNetworkRequest {
                    name_or_id: name.clone(),
                };
                match agent.call(agent.client().inspect_network(req)).await {
                    Ok(d) => found.push(d),
                    Err(e) if e.code() == Some(Code::NotFound) => {
                        errors.push(CliError::new(format!("No such network: {name}")))
                    }
                    Err(e) => errors.push(e),
                }
            }
            // Like docker: the networks found (`[]` if none), then an error per missing one.
            out(&format::inspect(&found));
            done(errors)
        }
        NetworkCmd::Rm { networks } => {
            let agent = Agent::connect(path).await?;
            let mut errors = Vec::new();
            for name in networks {
                let req = RemoveNetworkRequest {
                    name_or_id: name.clone(),
                };
                match agent.call(agent.client().remove_network(req)).await {
                    // docker echoes each argument as given (name or ID).
                    Ok(_) => out(&format!("{name}\n")),
                    Err(e) => errors.push(e),
                }
            }
            done(errors)
        }
        NetworkCmd::Connect(a) => {
            let publish = a
                .publish
                .iter()
                .map(|p| parse_publish(p))
                .collect::<Result<Vec<_>, _>>()?;
            let agent = Agent::connect(path).await?;
            let netns = a.netns.unwrap_or_else(|| a.container.clone());
            agent
                .call(agent.client().connect_container(ConnectRequest {
                    network: a.network,
                    container: a.container,
                    netns,
                    ipv4: a.ip,
                    publish,
                    ..Default::default()
                }))
                .await?;
            Ok(())
        }
        NetworkCmd::Disconnect { network, container } => {
            let agent = Agent::connect(path).await?;
            agent
                .call(
                    agent
                        .client()
                        .disconnect_container(DisconnectRequest { network, container }),
                )
                .await?;
            Ok(())
        }
        NetworkCmd::Vtep(VtepCmd::Add { network, address }) => {
            let (ip, port) = parse_vtep(&address)?;
            let agent = Agent::connect(path).await?;
            agent
                .call(agent.client().add_vtep(AddVtepRequest {
                    network,
                    ip: ip.to_string(),
                    // 0: the agent's default, the VXLAN port.
                    port: port.map_or(0, u32::from),
                }))
                .await?;
            Ok(())
        }
        NetworkCmd::Vtep(VtepCmd::Rm { network, address }) => {
            let (ip, port) = parse_vtep(&address)?;
            let agent = Agent::connect(path).await?;
            agent
                .call(agent.client().remove_vtep(RemoveVtepRequest {
                    network,
                    ip: ip.to_string(),
                    // 0: the agent's default, the VXLAN port.
                    port: port.map_or(0, u32::from),
                }))
                .await?;
            Ok(())
        }
        NetworkCmd::Vtep(VtepCmd::Ls { network }) => {
            let agent = Agent::connect(path).await?;
            let resp = agent
                .call(agent.client().list_vteps(ListVtepsRequest { network }))
                .await?;
            out(&format::vtep_ls(&resp.vteps));
            Ok(())
        }
    }
}

fn done(errors: Vec<CliError>) -> Result<(), Failure> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure(errors))
    }
}
