//! A fast 64-bit hash, to catch damage (checkpoints, write intents) and to order lookup
//! tables; not for adversaries.

/// Mixes `v` into `h`.
pub(crate) fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// A fast 64-bit hash (8 bytes per step) to catch damage, not adversaries.
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w));
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix(mix(h, u64::from_le_bytes(last)), 0xFF51_AFD7_ED55_8CCD)
}
