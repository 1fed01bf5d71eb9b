//! libFuzzer entry of `history_range`; the body and its properties are
//! `presence_server::fuzz_targets::history_range`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presence_server::fuzz_targets::history_range(data));
