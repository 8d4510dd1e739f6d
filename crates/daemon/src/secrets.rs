//! Auth secrets: made from the operating system's randomness, stored only as SHA-256 hashes,
//! compared in constant time.

use bindery_domain::SecretHash;
use subtle::ConstantTimeEq;

/// 16 bytes from the operating system's randomness.
pub fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system provides randomness");
    bytes
}

/// A new secret: 32 lowercase hex digits (128 random bits), the shape of a Twilio auth token.
pub fn new_secret() -> String {
    hex::encode(random_bytes())
}

/// Whether `secret` is the one `hash` was made from, in time independent of where they differ.
pub fn matches(secret: &str, hash: &SecretHash) -> bool {
    SecretHash::of(secret)
        .as_bytes()
        .ct_eq(hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_its_hash_only() {
        let secret = new_secret();
        assert_eq!(secret.len(), 32);
        let hash = SecretHash::of(&secret);
        assert!(matches(&secret, &hash));
        assert!(!matches(&new_secret(), &hash));
    }
}
