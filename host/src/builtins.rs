//! The components built into the binary: `build.rs` compiles them and hands over the paths of
//! their bytes and their SHA-256, so a process never hashes them at start (~2 ms of every
//! cold `call`).

/// Tools by the name `component: builtin` resolves: bytes and SHA-256 hex.
const TOOLS: &[(&str, &[u8], &str)] = &[(
    "backlog_tool",
    include_bytes!(env!("BACKLOG_TOOL_WASM")),
    env!("BACKLOG_TOOL_WASM_SHA256"),
)];

/// The scheduler (the governance job runner) and its SHA-256 hex.
pub(crate) const SCHEDULER_WASM: &[u8] = include_bytes!(env!("SCHEDULER_WASM"));
pub(crate) const SCHEDULER_WASM_SHA256: &str = env!("SCHEDULER_WASM_SHA256");

/// The builtin tool `name`: its bytes and SHA-256 hex.
pub(crate) fn tool(name: &str) -> Option<(&'static [u8], &'static str)> {
    TOOLS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, bytes, digest)| (*bytes, *digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::plugins::sha256_hex;

    #[test]
    fn the_digests_from_build_rs_are_the_bytes_sha256() {
        for (name, bytes, digest) in TOOLS {
            assert_eq!(*digest, sha256_hex(bytes), "{name}");
        }
        assert_eq!(SCHEDULER_WASM_SHA256, sha256_hex(SCHEDULER_WASM));
    }
}
