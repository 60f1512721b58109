//! The send path's answers to frames that do not fit the path to their peer (see
//! [`crate::encap`]'s path MTU notes): sent in smaller segments or left to the host to
//! fragment, or answered with ICMP "too big"; and the count of sends a narrower route than
//! the tables know turned into fragments.

use std::net::SocketAddr;

use ovnet_sys::Tap;
use ovnet_wire::gso;
use ovnet_wire::virtio::VnetHdr;

use super::Encapper;
use crate::counters::DropReason;
use crate::network::Network;

impl Encapper<'_> {
    /// Sends a frame larger than the path to `dst` (MTU `mtu`) that may not be refused: a
    /// super-frame in segments that fit the path, a plain frame alone for the host to fragment
    /// the outer datagram.
    pub(super) fn oversized(
        &mut self,
        net: &Network,
        hdr: &VnetHdr,
        frame: &[u8],
        tcp: Option<&gso::TcpFrame>,
        dst: SocketAddr,
        mtu: u16,
    ) {
        match tcp {
            Some(t) => {
                let fits = net.mtu.min(usize::from(mtu));
                self.send_super(net, hdr, frame, t, fits, dst);
            }
            None => {
                if self.send_one(net, frame, dst) {
                    net.counters.fragmented(1);
                }
            }
        }
    }

    /// Answers `frame`, refused for not fitting a path of MTU `mtu`, with ICMP "too big"
    /// written into `tap`, as the network's budget allows.
    pub(super) fn answer(&mut self, net: &Network, tap: &Tap, frame: &[u8], mtu: u16) {
        if let Err(err) = self.too_big.answer(net, tap, frame, mtu, self.now) {
            net.counters.count_drop(DropReason::TapWriteError);
            self.tap_log.warn(format_args!(
                "writing a \"too big\" answer to TAP {}: {err}",
                tap.name()
            ));
        }
    }

    /// Counts `count` datagrams of `segment` bytes that the route to `dst` could not carry in
    /// one UDP GSO send, and left one by one for the host to fragment; says so once a minute.
    pub(super) fn narrow_route(
        &mut self,
        net: &Network,
        dst: SocketAddr,
        count: usize,
        segment: usize,
    ) {
        net.counters.fragmented(count as u64);
        self.mtu_log.warn(format_args!(
            "the route to VTEP {dst} carries less than a {segment}-byte datagram (EMSGSIZE): \
             sent one by one for the host to fragment; the path MTU the tables give is larger \
             than this host's route allows (see `ip route get {}`)",
            dst.ip()
        ));
    }
}
