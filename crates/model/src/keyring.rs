//! Encryption of private keys at rest, byte-compatible with APISIX's `data_encryption.keyring`:
//! AES-CBC (128 or 256 by key length) with the IV equal to the key, PKCS#7, standard base64.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The keyring: the first key encrypts, every key is tried to decrypt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<Vec<u8>>,
}

/// A keyring entry that is neither 16 nor 32 bytes long.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("keyring entry must be 16 or 32 characters, got {0}")]
pub struct BadKeyLength(pub usize);

impl Keyring {
    /// Builds a keyring from APISIX's entries.
    pub fn new<I: IntoIterator<Item = String>>(keys: I) -> Result<Self, BadKeyLength> {
        let keys = keys
            .into_iter()
            .map(|k| match k.len() {
                16 | 32 => Ok(k.into_bytes()),
                n => Err(BadKeyLength(n)),
            })
            .collect::<Result<_, _>>()?;
        Ok(Keyring { keys })
    }

    /// APISIX's default keyring.
    pub fn apisix_default() -> Self {
        Keyring::new(["qeddd145sfvddff3".to_owned(), "edd1c9f0985e76a2".to_owned()])
            .expect("default keys are 16 bytes")
    }

    /// Encrypts a PEM key for storage; an empty keyring stores it in clear, as APISIX does.
    pub fn encrypt(&self, plain: &str) -> String {
        let Some(key) = self.keys.first() else {
            return plain.to_owned();
        };
        let data = plain.as_bytes();
        let sealed = match key.len() {
            16 => cbc::Encryptor::<aes::Aes128>::new(key[..].into(), key[..].into())
                .encrypt_padded_vec_mut::<Pkcs7>(data),
            _ => cbc::Encryptor::<aes::Aes256>::new(key[..].into(), key[..16].into())
                .encrypt_padded_vec_mut::<Pkcs7>(data),
        };
        STANDARD.encode(sealed)
    }

    /// Decrypts a stored key with the first keyring entry that yields valid UTF-8.
    pub fn decrypt(&self, sealed: &str) -> Option<String> {
        let data = STANDARD.decode(sealed.trim()).ok()?;
        self.keys.iter().find_map(|key| {
            let plain = match key.len() {
                16 => cbc::Decryptor::<aes::Aes128>::new(key[..].into(), key[..].into())
                    .decrypt_padded_vec_mut::<Pkcs7>(&data),
                _ => cbc::Decryptor::<aes::Aes256>::new(key[..].into(), key[..16].into())
                    .decrypt_padded_vec_mut::<Pkcs7>(&data),
            };
            plain.ok().and_then(|p| String::from_utf8(p).ok())
        })
    }

    /// A stored key in clear: PEM text is returned as is, anything else is decrypted.
    pub fn reveal(&self, stored: &str) -> Option<String> {
        if stored.starts_with("---") {
            Some(stored.to_owned())
        } else {
            self.decrypt(stored)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_both_key_sizes() {
        for key in ["qeddd145sfvddff3", "0123456789abcdef0123456789abcdef"] {
            let ring = Keyring::new([key.to_owned()]).unwrap();
            let sealed = ring.encrypt("-----BEGIN PRIVATE KEY-----\nabc\n");
            assert_ne!(sealed, "-----BEGIN PRIVATE KEY-----\nabc\n");
            assert_eq!(
                ring.decrypt(&sealed).unwrap(),
                "-----BEGIN PRIVATE KEY-----\nabc\n"
            );
        }
    }

    #[test]
    fn matches_apisix_ciphertext() {
        // AES-128-CBC, key = iv = "qeddd145sfvddff3", PKCS#7, as `openssl enc` computes it.
        let ring = Keyring::apisix_default();
        assert_eq!(ring.encrypt("hello"), "RdO7hElVO+FhS5u1spmKUQ==");
    }

    #[test]
    fn decrypt_tries_every_key() {
        let old = Keyring::new(["edd1c9f0985e76a2".to_owned()]).unwrap();
        let sealed = old.encrypt("secret");
        assert_eq!(
            Keyring::apisix_default().decrypt(&sealed).unwrap(),
            "secret"
        );
    }

    #[test]
    fn empty_keyring_keeps_clear_text_and_bad_lengths_fail() {
        let ring = Keyring::default();
        assert_eq!(ring.encrypt("pem"), "pem");
        assert_eq!(Keyring::new(["short".to_owned()]), Err(BadKeyLength(5)));
    }
}
