//! libFuzzer entry of `client_message`; the body and its properties are
//! `presence_server::fuzz_targets::client_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presence_server::fuzz_targets::client_message(data));
