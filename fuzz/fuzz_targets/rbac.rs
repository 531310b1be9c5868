#![no_main]
//! Fuzz target `rbac`: the property check `fuzz_checks::check_rbac`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::check_rbac(data));
