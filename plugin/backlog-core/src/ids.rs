//! Item and event ids: `bl_` / `ev_` + 12 lowercase hex digits from 6 random bytes.
//!
//! Randomness comes in through [`Entropy`]: this crate never reads a random source itself (the
//! guest feeds WASI random; tests and benchmarks use the deterministic [`SeqEntropy`]).

/// A source of random bytes.
pub trait Entropy {
    /// Fills `buf` completely.
    fn fill(&mut self, buf: &mut [u8]);
}

/// Prefix of item ids.
pub const ITEM_PREFIX: &str = "bl_";
/// Prefix of event ids.
pub const EVENT_PREFIX: &str = "ev_";
/// Number of hex digits after the prefix.
pub const HEX_LEN: usize = 12;

fn new_id(prefix: &str, entropy: &mut dyn Entropy) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; HEX_LEN / 2];
    entropy.fill(&mut bytes);
    let mut id = String::with_capacity(prefix.len() + HEX_LEN);
    id.push_str(prefix);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

/// A fresh item id, `bl_` + 12 lowercase hex.
pub fn new_item_id(entropy: &mut dyn Entropy) -> String {
    new_id(ITEM_PREFIX, entropy)
}

/// A fresh event id, `ev_` + 12 lowercase hex.
pub fn new_event_id(entropy: &mut dyn Entropy) -> String {
    new_id(EVENT_PREFIX, entropy)
}

fn is_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == HEX_LEN && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Whether `s` matches `^bl_[0-9a-f]{12}$`.
pub fn is_item_id(s: &str) -> bool {
    is_id(ITEM_PREFIX, s)
}

/// Whether `s` matches `^ev_[0-9a-f]{12}$`.
pub fn is_event_id(s: &str) -> bool {
    is_id(EVENT_PREFIX, s)
}

/// Deterministic entropy for tests and benchmarks: each `fill` writes the next value of a
/// counter, big-endian, right-aligned (so ids come out as `bl_000000000001`, `ev_000000000002`,
/// …). Never use it for real ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqEntropy {
    next: u64,
}

impl SeqEntropy {
    /// A counter whose first value is `start`.
    pub fn new(start: u64) -> Self {
        SeqEntropy { next: start }
    }
}

impl Default for SeqEntropy {
    /// Starts at 1.
    fn default() -> Self {
        SeqEntropy::new(1)
    }
}

impl Entropy for SeqEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        let value = self.next.to_be_bytes();
        self.next = self.next.wrapping_add(1);
        let n = buf.len().min(value.len());
        let split = buf.len() - n;
        let (pad, tail) = buf.split_at_mut(split);
        pad.fill(0);
        tail.copy_from_slice(&value[value.len() - n..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_item(s: &str, ok: bool) {
        assert_eq!(is_item_id(s), ok, "{s:?}");
    }

    #[test]
    fn item_id_format() {
        check_item("bl_0123456789ab", true);
        check_item("bl_000000000000", true);
        check_item("bl_0123456789AB", false);
        check_item("bl_0123456789a", false);
        check_item("bl_0123456789abc", false);
        check_item("ev_0123456789ab", false);
        check_item("bl_0123456789ag", false);
        check_item("", false);
        check_item("bl_", false);
        check_item("bl_01234567é9a", false);
        assert!(is_event_id("ev_00000000000f"));
        assert!(!is_event_id("bl_00000000000f"));
    }

    #[test]
    fn seq_entropy_ids() {
        let mut e = SeqEntropy::default();
        assert_eq!(new_item_id(&mut e), "bl_000000000001");
        assert_eq!(new_event_id(&mut e), "ev_000000000002");
        let mut e = SeqEntropy::new(0xabcdef012345);
        let id = new_item_id(&mut e);
        assert_eq!(id, "bl_abcdef012345");
        assert!(is_item_id(&id));
        let mut big = [0xffu8; 10];
        SeqEntropy::new(0x0102).fill(&mut big);
        assert_eq!(big, [0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        let mut small = [0u8; 2];
        SeqEntropy::new(0x0102_0304).fill(&mut small);
        assert_eq!(small, [3, 4]);
    }
}
