//! The per-job file capability: what a worker's file server asks of a request before
//! serving a job's files (map outputs fetched by the shuffle, file results).
//!
//! Why a capability rather than the cluster token: every client holds the token (or a
//! principal's), and a token that opens the API must not also open every job's
//! intermediate data on every worker. The coordinator draws a secret [`CapabilityKey`]
//! and hands it to workers only, in their registration answer; the capability of job
//! `J` is HMAC-SHA-256(key, `J`), so a worker checks a request with one hash and one
//! constant-time comparison, with no call to the coordinator and no state per job, and
//! nobody without the key can forge the capability of another job.
//!
//! A request carries it in one header, [`FILE_CAPABILITY_HEADER`], as 64 lowercase hex
//! digits.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The HTTP header carrying a job's file capability.
pub const FILE_CAPABILITY_HEADER: &str = "x-essaim-capability";

/// Bytes of a [`CapabilityKey`].
pub const CAPABILITY_KEY_BYTES: usize = 32;

/// The secret from which every job's capability is derived.
#[derive(Clone, PartialEq, Eq)]
pub struct CapabilityKey([u8; CAPABILITY_KEY_BYTES]);

// Never printed: a key in a log would open every job's files.
impl std::fmt::Debug for CapabilityKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CapabilityKey(…)")
    }
}

impl CapabilityKey {
    /// Returns the key of these bytes.
    pub fn from_bytes(bytes: [u8; CAPABILITY_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// Returns the key of a wire field, or `None` when it is not exactly
    /// [`CAPABILITY_KEY_BYTES`] long (an older coordinator sends none).
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// Returns the key's bytes, for the registration answer.
    pub fn as_bytes(&self) -> &[u8; CAPABILITY_KEY_BYTES] {
        &self.0
    }

    /// Returns the capability of `job`, as sent in [`FILE_CAPABILITY_HEADER`].
    pub fn capability_of(&self, job: u64) -> String {
        let mut text = String::with_capacity(64);
        for byte in self.tag(job) {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        text
    }

    /// Returns whether `presented` is the capability of `job`, compared in constant
    /// time so that it cannot be guessed byte by byte from response times.
    pub fn admits(&self, job: u64, presented: &[u8]) -> bool {
        let expected = self.capability_of(job);
        constant_time_equal(expected.as_bytes(), presented)
    }

    fn tag(&self, job: u64) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts a key of any length");
        mac.update(b"essaim file capability v1\0");
        mac.update(&job.to_be_bytes());
        mac.finalize().into_bytes().into()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capability_opens_its_own_job_only() {
        let key = CapabilityKey::from_bytes([7; 32]);
        let of_job_3 = key.capability_of(3);
        assert_eq!(of_job_3.len(), 64);
        assert!(key.admits(3, of_job_3.as_bytes()));
        assert!(!key.admits(4, of_job_3.as_bytes()));
        assert!(!key.admits(3, &of_job_3.as_bytes()[..63]));
        let other_key = CapabilityKey::from_bytes([8; 32]);
        assert!(!other_key.admits(3, of_job_3.as_bytes()));
    }

    #[test]
    fn a_key_comes_off_the_wire_only_at_its_length() {
        assert!(CapabilityKey::from_wire(&[]).is_none());
        assert!(CapabilityKey::from_wire(&[1; 31]).is_none());
        assert_eq!(
            CapabilityKey::from_wire(&[1; 32]),
            Some(CapabilityKey::from_bytes([1; 32]))
        );
        assert_eq!(
            format!("{:?}", CapabilityKey::from_bytes([1; 32])),
            "CapabilityKey(…)"
        );
    }
}
