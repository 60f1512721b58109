//! Fuzz target `gro`: see [`ovnet_fuzzing::gro`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ovnet_fuzzing::gro(data));
