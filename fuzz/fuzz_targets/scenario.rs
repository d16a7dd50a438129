#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| voxsoak_fuzz::scenario(data));
