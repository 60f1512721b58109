//! Tests of the send path's pure parts: trains and the GSO bounds of super-frames.

use super::*;

#[test]
fn a_train_takes_equal_datagrams_then_one_shorter_and_nothing_after() {
    let dst: SocketAddr = "192.0.2.1:4789".parse().unwrap();
    let other: SocketAddr = "192.0.2.2:4789".parse().unwrap();
    let mut t = Train {
        dst: Some(dst),
        sock: 3,
        stride: 100,
        bytes: 100,
        frames: vec![(0, 92)],
        ..Train::default()
    };
    assert!(t.takes(dst, 3, 100));
    assert!(t.takes(dst, 3, 60), "a shorter one may end the train");
    assert!(!t.takes(dst, 3, 101), "a longer one may not");
    assert!(!t.takes(other, 3, 100), "another VTEP");
    assert!(!t.takes(dst, 4, 100), "another flow socket");
    t.closed = true;
    assert!(!t.takes(dst, 3, 100), "nothing after the short one");
    t.closed = false;
    t.frames = vec![(0, 0); MAX_GSO_SEGMENTS];
    assert!(!t.takes(dst, 3, 100), "at most 64 segments");
    t.frames.truncate(1);
    t.bytes = MAX_GSO_PAYLOAD - 50;
    assert!(!t.takes(dst, 3, 100), "at most one GSO payload");
}

#[test]
fn super_frames_fit_one_gso_send() {
    assert_eq!(tso_segments(1450, false), 44);
    assert!(tso_segments(1450, false) * (8 + 14 + 1450) <= 65_507);
    assert_eq!(tso_segments(9000, false), 7);
    assert_eq!(tso_segments(68, false), 64);
    assert_eq!(
        tso_segments(0, false),
        64,
        "below the IPv4 minimum: as for 68"
    );
}

#[test]
fn super_frames_through_the_uplink_fit_one_outer_datagram() {
    assert_eq!(tso_segments(1450, true), 46);
    for mtu in [68, 576, 1280, 1400, 1450, 1500, 4000, 9000] {
        let n = tso_segments(mtu, true);
        // Worst case: inner Ethernet + VLAN, IPv4 and TCP with full options, segments of
        // the largest payload the MTU allows, inside outer IPv4 + UDP + VXLAN.
        let outer = 36 + gso::MAX_HEADERS as u32 + n * (mtu - 40);
        assert!(
            outer <= 65_535,
            "MTU {mtu}: {n} segments make {outer} bytes"
        );
        assert!(n >= tso_segments(mtu, false), "MTU {mtu}");
    }
}
