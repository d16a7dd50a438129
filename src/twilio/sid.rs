//! Twilio SIDs: a two-letter prefix and 32 lowercase hex digits.

/// Account SIDs start with this.
pub const ACCOUNT: &str = "AC";
/// Call SIDs start with this.
pub const CALL: &str = "CA";
/// Media stream SIDs start with this.
pub const STREAM: &str = "MZ";

/// A new SID with `prefix`, drawn from `rng` (seeded runs give the same SIDs).
pub fn new_sid(prefix: &str, rng: &mut impl rand::Rng) -> String {
    let high = rng.next_u64();
    let low = rng.next_u64();
    format!("{prefix}{high:016x}{low:016x}")
}

/// Whether `text` is a SID with `prefix`.
pub fn is_sid(prefix: &str, text: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sids_have_the_prefix_and_32_hex_digits() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for prefix in [ACCOUNT, CALL, STREAM] {
            let sid = new_sid(prefix, &mut rng);
            assert_eq!(sid.len(), 34);
            assert!(is_sid(prefix, &sid), "{sid}");
            assert!(!is_sid("XX", &sid));
        }
        assert!(!is_sid(CALL, "CA123"));
        assert!(!is_sid(CALL, "CA0123456789ABCDEF0123456789abcdef"));
    }

    #[test]
    fn seeded_sids_repeat() {
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        assert_eq!(new_sid(CALL, &mut a), new_sid(CALL, &mut b));
    }
}
