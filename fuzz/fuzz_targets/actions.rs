#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| payoff_fuzz::actions(data));
