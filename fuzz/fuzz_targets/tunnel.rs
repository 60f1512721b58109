//! Fuzz target `tunnel`: see [`ovnet_fuzzing::tunnel`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ovnet_fuzzing::tunnel(data));
