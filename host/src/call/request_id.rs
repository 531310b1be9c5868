//! Request ids: `req_` and 16 hex digits, unique within a process.

/// A fresh request id, `req_` and 16 hex digits: a per-process counter, offset by a random
/// start and scrambled by a bijection, so ids never repeat within a process and processes
/// do not share a sequence. (One `getrandom` per process, not one per call.)
pub fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes) ^ u64::from(std::process::id())
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // The splitmix64 finalizer: a bijection on u64, so distinct inputs give distinct ids.
    let mut z = start.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("req_{z:016x}")
}
