#![no_main]
//! Fuzz target `mcp_dispatch`: the property check `fuzz_checks::check_mcp_dispatch`, after
//! the bridge is loaded (its components compiled) outside any input's timeout.

libfuzzer_sys::fuzz_target!(
    init: fuzz_checks::init_mcp_dispatch(),
    |data: &[u8]| fuzz_checks::check_mcp_dispatch(data)
);
