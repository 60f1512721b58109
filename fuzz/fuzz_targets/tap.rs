//! Fuzz target `tap`: see [`ovnet_fuzzing::tap`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ovnet_fuzzing::tap(data));
