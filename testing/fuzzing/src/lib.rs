//! The bodies of ovnet's coverage-guided fuzz targets, one public function per target, each
//! taking the fuzzer's bytes. The `fuzz/` directory (cargo-fuzz, outside the workspace) calls
//! them from `fuzz_target!`; this crate's test replays every committed corpus file through
//! them, so the targets keep compiling and the corpora keep meaning something in the normal
//! suite.
//!
//! Each body drives the pure decisions of the data plane (and of the DNS resolver) the way the
//! I/O code does, over tables shaped like a real host's, and asserts what must hold whatever
//! the input: nothing panics, nothing reads past a buffer, and what the code builds parses
//! back (segmenting a coalesced run gives the run's payload back, an answer is a valid
//! frame or DNS message). A failed assertion is a crash the fuzzer reports.
//!
//! | target | function | what it feeds |
//! |---|---|---|
//! | `decap` | [`decap`] | VXLAN datagrams through the whole receive decision |
//! | `tap` | [`tap`] | a `virtio_net_hdr` and a frame through the send decision |
//! | `gso` | [`gso`] | a TCP super-frame cut into segments, both ways the engine cuts |
//! | `gro` | [`gro`] | frames coalesced into super-frames, and cut back |
//! | `tunnel` | [`tunnel`] | a TCP super-frame with the outer headers of tunnel GSO |
//! | `arp_nd` | [`arp_nd`] | ARP, neighbour discovery, ICMP errors and port security |
//! | `dns` | [`dns`] | one DNS query through the resolver's decision and relay |

#![forbid(unsafe_code)]

mod input;
mod net;
mod targets;

pub use targets::{arp_nd, decap, dns, gro, gso, tap, tunnel};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/` file and corpus directory.
pub const TARGETS: [(&str, Target); 7] = [
    ("decap", decap),
    ("tap", tap),
    ("gso", gso),
    ("gro", gro),
    ("tunnel", tunnel),
    ("arp_nd", arp_nd),
    ("dns", dns),
];
