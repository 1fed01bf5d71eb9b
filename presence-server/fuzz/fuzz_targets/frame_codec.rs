//! libFuzzer entry of `frame_codec`; the body and its properties are
//! `presence_server::fuzz_targets::frame_codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presence_server::fuzz_targets::frame_codec(data));
