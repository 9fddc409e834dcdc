//! Tenants' secrets (webhook signing secrets) sealed at rest.
//!
//! A copy of the database alone signs nothing: each secret is stored as
//! `enc1:` and base64 of a random nonce and its ChaCha20-Poly1305 sealing
//! under a key kept beside the signing key (`<data-dir>/secrets.key`, mode
//! 0600; every node sharing a database needs the same one). Secrets stored
//! before sealing existed (`whsec_…` as is) are still read.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::problem::{ApiError, ErrorCode};

const PREFIX: &str = "enc1:";

/// The key that seals tenants' secrets.
pub struct SecretBox {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// The box of a 32-byte key.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key");
        SecretBox {
            key: LessSafeKey::new(unbound),
        }
    }

    /// A new random key's bytes.
    pub fn generate() -> [u8; 32] {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system's random source");
        key
    }

    /// `secret` as stored: sealed under a fresh nonce.
    pub fn seal(&self, secret: &str) -> String {
        use base64::Engine as _;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source");
        let mut sealed = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .expect("a secret fits");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// A stored value sealed, when it was stored in clear (before secrets
    /// were sealed at rest); `None` when it is sealed already.
    pub fn reseal(&self, stored: &str) -> Option<String> {
        (!stored.starts_with(PREFIX)).then(|| self.seal(stored))
    }

    /// The secret of a stored value: opened, or as is when it was stored
    /// before sealing. A value sealed under another key (a node with the
    /// wrong `secrets.key`) is an error that says so.
    pub fn open(&self, stored: &str) -> Result<String, ApiError> {
        use base64::Engine as _;
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let unreadable = || {
            ApiError::new(
                ErrorCode::Unavailable,
                "a stored secret cannot be opened with this node's secrets.key (every node must hold the same one)",
            )
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| unreadable())?;
        if bytes.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| unreadable())?;
        String::from_utf8(plain.to_vec()).map_err(|_| unreadable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_under_its_key() {
        let key = SecretBox::new(&SecretBox::generate());
        let sealed = key.seal("whsec_abc");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("abc"));
        assert_ne!(sealed, key.seal("whsec_abc"), "a fresh nonce each time");
        assert_eq!(key.open(&sealed).unwrap(), "whsec_abc");
        let other = SecretBox::new(&SecretBox::generate());
        assert!(other.open(&sealed).is_err());
        assert_eq!(
            key.open("whsec_old").unwrap(),
            "whsec_old",
            "stored before sealing"
        );
        let mut chars: Vec<char> = sealed.chars().collect();
        let i = PREFIX.len() + 20;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(key.open(&tampered).is_err());
    }
}
