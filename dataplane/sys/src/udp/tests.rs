//! Tests of the underlay socket over loopback: gathered, GSO, fallback and stalled sends,
//! steering by source port, and the errors of a bad bind.

use super::*;

/// Waits up to a second for room, never stopped.
fn patient() -> Patience<'static> {
    Patience::at_most(Duration::from_secs(1))
}

#[test]
fn a_wait_gives_up_after_its_patience_or_at_once_when_stopping() {
    let stop = AtomicBool::new(false);
    let w = Waiting::new(Patience {
        wait: Duration::from_millis(50),
        stop: &stop,
    });
    let first = w.next_slice().expect("a fresh wait may wait");
    assert!(first <= STOP_CHECK, "{first:?}");
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(w.next_slice(), None);
    assert!(is_stalled(&w.gave_up()));
    assert!(w.gave_up().to_string().contains("no room for 50ms"));
    let w = Waiting::new(Patience {
        wait: Duration::from_secs(3600),
        stop: &stop,
    });
    stop.store(true, Ordering::Release);
    assert_eq!(w.next_slice(), None);
    assert!(w.gave_up().to_string().contains("stopping"));
    let never = Waiting::new(Patience::at_most(Duration::ZERO));
    assert_eq!(never.next_slice(), None, "zero patience tries once");
}

/// Runs `f` on a thread of its own new network namespace, holding only `lo` (up).
fn in_private_netns(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(|| {
        crate::netns::unshare().unwrap();
        crate::link::set_up("lo").unwrap();
        f();
    })
    .join()
    .unwrap();
}

fn bind_loopback() -> UnderlaySocket {
    UnderlaySocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap())).unwrap()
}

/// The next `count` datagrams on `rx`, each as (bytes, source), waiting up to 2 s each.
fn receive(rx: &UnderlaySocket, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while out.len() < count {
        let mut ready = [false];
        crate::poll_readable(&[rx.as_raw_fd()], &mut ready, 2000).unwrap();
        assert!(ready[0], "datagram {} of {count} did not arrive", out.len());
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        out.push((buf[..n].to_vec(), from));
    }
    out
}

/// Five datagrams of 100 bytes but the last (60), each a header of 8 and a payload.
fn train() -> (Vec<[u8; 8]>, Vec<Vec<u8>>) {
    let headers: Vec<[u8; 8]> = (0..5u8).map(|i| [0x08, 0, 0, 0, 0, 0, 42, i]).collect();
    let payloads = (0..5u8)
        .map(|i| vec![i; if i < 4 { 92 } else { 52 }])
        .collect();
    (headers, payloads)
}

fn gathered<'a>(headers: &'a [[u8; 8]], payloads: &'a [Vec<u8>]) -> Vec<IoSlice<'a>> {
    headers
        .iter()
        .zip(payloads)
        .flat_map(|(h, p)| [IoSlice::new(h), IoSlice::new(p)])
        .collect()
}

#[test]
fn loopback_round_trip_with_gathered_send() {
    let (rx, tx) = (bind_loopback(), bind_loopback());
    let dst = rx.local_addr().unwrap();
    let parts = [IoSlice::new(b"head"), IoSlice::new(b"-body")];
    let t = Transmit {
        dst,
        parts: &parts,
        per: 2,
        segment: 9,
    };
    assert!(matches!(tx.send(&t, true, patient()).unwrap(), Sent::Done));
    let got = receive(&rx, 1);
    assert_eq!(got, [(b"head-body".to_vec(), tx.local_addr().unwrap())]);
    let mut buf = [0u8; 64];
    assert_eq!(
        rx.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

#[test]
fn gso_send_arrives_as_separate_datagrams_or_one_gro_run() {
    let (rx, plain, tx) = (bind_loopback(), bind_loopback(), bind_loopback());
    assert!(tx.probe_gso());
    let (headers, payloads) = train();
    let parts = gathered(&headers, &payloads);
    let mut t = Transmit {
        dst: plain.local_addr().unwrap(),
        parts: &parts,
        per: 2,
        segment: 100,
    };
    // Without GRO: five datagrams.
    assert!(matches!(tx.send(&t, true, patient()).unwrap(), Sent::Done));
    let lens: Vec<usize> = receive(&plain, 5).iter().map(|(d, _)| d.len()).collect();
    assert_eq!(lens, [100, 100, 100, 100, 60]);
    // With GRO: the datagrams may come back together, with the segment size.
    rx.enable_gro().unwrap();
    t.dst = rx.local_addr().unwrap();
    assert!(matches!(tx.send(&t, true, patient()).unwrap(), Sent::Done));
    let mut buf = [0u8; 4096];
    let mut got = 0;
    while got < 460 {
        let mut ready = [false];
        crate::poll_readable(&[rx.as_raw_fd()], &mut ready, 2000).unwrap();
        let (n, from, seg) = rx.recv_gro(&mut buf).unwrap();
        assert_eq!(from, tx.local_addr().unwrap());
        if n > 100 {
            assert_eq!(seg, Some(100));
        }
        got += n;
    }
    assert_eq!(got, 460);
}

#[test]
fn a_refused_gso_send_leaves_one_datagram_at_a_time_and_says_why() {
    let (rx, tx) = (bind_loopback(), bind_loopback());
    // Without UDP checksums the kernel refuses GSO (EINVAL, udp_send_skb()) but still
    // sends plain datagrams: a real refusal, on any kernel.
    setsockopt_int(tx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
    let (headers, payloads) = train();
    let parts = gathered(&headers, &payloads);
    let t = Transmit {
        dst: rx.local_addr().unwrap(),
        parts: &parts,
        per: 2,
        segment: 100,
    };
    match tx.send(&t, true, patient()).unwrap() {
        Sent::GsoRefused { refusal, then } => {
            assert!(is_gso_refusal(&refusal), "{refusal}");
            assert_eq!(refusal.raw_os_error(), Some(libc::EINVAL), "{refusal}");
            then.unwrap();
        }
        other => panic!("the kernel took a UDP GSO send without checksums: {other:?}"),
    }
    let got: Vec<Vec<u8>> = receive(&rx, 5).into_iter().map(|(d, _)| d).collect();
    for (i, d) in got.iter().enumerate() {
        assert_eq!(&d[..8], &headers[i], "datagram {i} out of order");
        assert_eq!(&d[8..], &payloads[i][..], "datagram {i}");
    }
    // Asked without GSO, the same send is no refusal.
    assert!(matches!(tx.send(&t, false, patient()).unwrap(), Sent::Done));
    assert_eq!(receive(&rx, 5).len(), 5);
}

#[test]
fn a_gso_send_over_a_smaller_route_mtu_leaves_one_by_one_fragmented() {
    in_private_netns(|| {
        // The route to 127.0.0.2 carries 1400-byte packets: 1372 bytes of UDP payload.
        let ok = std::process::Command::new("ip")
            .args(["route", "add", "local", "127.0.0.2/32", "dev", "lo"])
            .args(["mtu", "lock", "1400", "table", "local"])
            .status()
            .unwrap();
        assert!(ok.success(), "ip route add ... mtu lock 1400");
        let tx = bind_loopback();
        let rx = UnderlaySocket::bind(&UdpConfig::new("127.0.0.2:0".parse().unwrap())).unwrap();
        let payloads: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1450]).collect();
        let parts: Vec<IoSlice<'_>> = payloads.iter().map(|p| IoSlice::new(p)).collect();
        let t = Transmit {
            dst: rx.local_addr().unwrap(),
            parts: &parts,
            per: 1,
            segment: 1450,
        };
        match tx.send(&t, true, patient()).unwrap() {
            Sent::SegmentTooBig { then } => then.unwrap(),
            other => panic!("want SegmentTooBig, got {other:?}"),
        }
        // Fragmented on the way and put back together: whole, in order.
        let mut buf = [0u8; 2048];
        for p in &payloads {
            let mut ready = [false];
            crate::poll_readable(&[rx.as_raw_fd()], &mut ready, 2000).unwrap();
            assert!(ready[0], "a datagram did not arrive");
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &p[..]);
        }
        // Segments the route carries still leave with GSO.
        let small: Vec<IoSlice<'_>> = payloads.iter().map(|p| IoSlice::new(&p[..1372])).collect();
        let t = Transmit {
            parts: &small,
            segment: 1372,
            ..t
        };
        assert!(matches!(tx.send(&t, true, patient()).unwrap(), Sent::Done));
    });
}

#[test]
fn only_eio_and_einval_are_gso_refusals() {
    for (errno, refusal) in [
        (libc::EIO, true),
        (libc::EINVAL, true),
        (libc::EAGAIN, false),
        (libc::ENOBUFS, false),
        (libc::EMSGSIZE, false),
        (libc::ENETUNREACH, false),
    ] {
        let e = io::Error::from_raw_os_error(errno);
        assert_eq!(is_gso_refusal(&e), refusal, "{e}");
    }
    assert!(!is_gso_refusal(&io::Error::other("not an OS error")));
}

#[test]
fn a_send_without_gso_takes_several_batches_in_order() {
    let (rx, tx) = (bind_loopback(), bind_loopback());
    let header = [0x08u8, 0, 0, 0, 0, 0, 42, 0];
    let payloads: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; 1 + usize::from(i) * 7]).collect();
    let parts: Vec<IoSlice<'_>> = payloads
        .iter()
        .flat_map(|p| [IoSlice::new(&header), IoSlice::new(p)])
        .collect();
    // 70 datagrams: more than one sendmmsg takes.
    let t = Transmit {
        dst: rx.local_addr().unwrap(),
        parts: &parts,
        per: 2,
        segment: 8 + 70 * 7,
    };
    assert_eq!(t.datagrams(), 70);
    assert!(matches!(tx.send(&t, false, patient()).unwrap(), Sent::Done));
    for (p, (d, _)) in payloads.iter().zip(receive(&rx, 70)) {
        assert_eq!(&d[..8], &header);
        assert_eq!(&d[8..], &p[..]);
    }
    assert_eq!(tx.send_many(&[], 2, t.dst).unwrap(), 0);
}

#[test]
fn a_send_to_an_unroutable_address_fails() {
    in_private_netns(|| {
        let tx = bind_loopback();
        let parts = [IoSlice::new(b"x")];
        let t = Transmit {
            // TEST-NET-1: no route in a namespace with only lo.
            dst: "192.0.2.1:4789".parse().unwrap(),
            parts: &parts,
            per: 1,
            segment: 1,
        };
        let e = tx.send(&t, true, patient()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NetworkUnreachable, "{e}");
    });
}

#[test]
fn steering_by_source_port_picks_the_socket_of_the_ports_residue() {
    let mut cfg = UdpConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.reuse_port = true;
    let first = UnderlaySocket::bind(&cfg).unwrap();
    cfg.bind = first.local_addr().unwrap();
    let second = UnderlaySocket::bind(&cfg).unwrap();
    first.steer_by_source_port(2).unwrap();
    assert!(first.steer_by_source_port(0).is_err());
    let group = [first, second];
    let mut seen = [0usize; 2];
    let mut buf = [0u8; 64];
    for _ in 0..16 {
        let tx = bind_loopback();
        let port = tx.local_addr().unwrap().port();
        tx.sock.send_to(&port.to_be_bytes(), cfg.bind).unwrap();
        let want = usize::from(port % 2);
        let mut ready = [false; 2];
        let fds = [group[0].as_raw_fd(), group[1].as_raw_fd()];
        crate::poll_readable(&fds, &mut ready, 2000).unwrap();
        assert_eq!(ready, [want == 0, want == 1], "source port {port}");
        let (n, from) = group[want].recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.port()), (&port.to_be_bytes()[..], port));
        seen[want] += 1;
    }
    assert_eq!(seen.iter().sum::<usize>(), 16);
}

#[test]
fn port_in_use_names_the_address_and_a_cause() {
    let a = UnderlaySocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let err = UnderlaySocket::bind(&UdpConfig::new(a.local_addr().unwrap())).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[test]
fn foreign_address_is_refused_clearly() {
    // 192.0.2.1 (TEST-NET-1) is not configured here; nothing is sent.
    let err = UnderlaySocket::bind(&UdpConfig::new("192.0.2.1:4789".parse().unwrap())).unwrap_err();
    assert!(err.to_string().contains("not configured"), "{err}");
}

#[test]
fn copies_go_to_every_destination_and_a_refused_one_is_skipped() {
    // A namespace with only lo: TEST-NET-1 has no route there.
    in_private_netns(|| {
        let tx = bind_loopback();
        let (r1, r2) = (bind_loopback(), bind_loopback());
        let unroutable: SocketAddr = "192.0.2.1:4789".parse().unwrap();
        // More than one batch, the refused one inside the first.
        let mut dsts: Vec<SocketAddr> = (0..2 * COPIES_PER_CALL + 3)
            .map(|i| {
                let r = if i % 2 == 0 { &r1 } else { &r2 };
                r.local_addr().unwrap()
            })
            .collect();
        dsts[5] = unroutable;
        let parts = [IoSlice::new(&[0x08, 0, 0, 0]), IoSlice::new(b"copy")];
        let mut failed = Vec::new();
        let sent = tx.send_copies(&parts, &dsts, patient(), |d, e| failed.push((d, e.kind())));
        assert_eq!(sent, dsts.len() - 1);
        assert_eq!(
            failed,
            vec![(unroutable, io::ErrorKind::NetworkUnreachable)]
        );
        let to = |r: &UnderlaySocket| {
            dsts.iter()
                .filter(|d| **d == r.local_addr().unwrap())
                .count()
        };
        for r in [&r1, &r2] {
            for (bytes, from) in receive(r, to(r)) {
                assert_eq!(bytes, b"\x08\0\0\0copy");
                assert_eq!(from, tx.local_addr().unwrap());
            }
        }
        // Nothing to send: nothing sent, nothing failed.
        assert_eq!(tx.send_copies(&parts, &[], patient(), |_, _| panic!()), 0);
    });
}

#[test]
fn a_route_tells_its_mtu_and_no_route_is_a_clear_error() {
    // A route carries at most an IP packet's 65535 bytes, however large its device's MTU
    // (lo's is 65536).
    let lo = crate::link::mtu("lo").unwrap().min(65_535);
    assert_eq!(
        route_mtu(Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)).unwrap(),
        lo
    );
    // TEST-NET-3 is configured nowhere, so nothing can be bound to it.
    let e = route_mtu(Ipv4Addr::new(203, 0, 113, 77), Ipv4Addr::LOCALHOST).unwrap_err();
    assert!(
        e.to_string()
            .contains("the route from 203.0.113.77 to 127.0.0.1"),
        "{e}"
    );
}
