//! Fuzz target `decap`: see [`ovnet_fuzzing::decap`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ovnet_fuzzing::decap(data));
