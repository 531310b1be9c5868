#![no_main]
//! Fuzz target `mcp_dispatch`: the property check `fuzz_checks::check_mcp_dispatch`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_mcp_dispatch(data));
