//! Fuzz target `dns`: see [`ovnet_fuzzing::dns`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ovnet_fuzzing::dns(data));
