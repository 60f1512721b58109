//! Fuzz target `gso`: see [`ovnet_fuzzing::gso`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ovnet_fuzzing::gso(data));
