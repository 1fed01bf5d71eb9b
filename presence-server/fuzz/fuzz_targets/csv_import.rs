//! libFuzzer entry of `csv_import`; the body and its properties are
//! `presence_server::fuzz_targets::csv_import`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presence_server::fuzz_targets::csv_import(data));
