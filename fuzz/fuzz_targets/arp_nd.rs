//! Fuzz target `arp_nd`: see [`ovnet_fuzzing::arp_nd`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ovnet_fuzzing::arp_nd(data));
