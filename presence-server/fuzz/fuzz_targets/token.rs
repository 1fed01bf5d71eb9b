//! libFuzzer entry of `token`; the body and its properties are
//! `presence_server::fuzz_targets::token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presence_server::fuzz_targets::token(data));
