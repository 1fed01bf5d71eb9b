//! The `Presence-Signature` header of a delivery (the Stripe scheme): the
//! receiver recomputes HMAC-SHA256 over `"<t>." + body` with the shared
//! secret, compares in constant time, and rejects a `t` older than five
//! minutes, so a captured request cannot be replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "presence-signature";

/// The header's value for `body` sent at `t` (Unix seconds).
pub fn header(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!("t={t},v1={}", v1(secret, t, body))
}

/// Hex of HMAC-SHA256(secret, "<t>." + body).
pub fn v1(secret: &[u8], t: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 pins the primitive; the header's layout is
    /// pinned by a Python check in `tests/it/webhooks.rs`.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_header_signs_the_time_and_the_body() {
        let h = header(b"whsec_0123456789abcdef", 1_767_225_600, b"{\"events\":[]}");
        let (t, v) = h.split_once(",v1=").unwrap();
        assert_eq!(t, "t=1767225600");
        assert_eq!(v.len(), 64);
        assert_ne!(
            v1(b"whsec_0123456789abcdef", 1_767_225_601, b"{\"events\":[]}"),
            v
        );
        assert_ne!(
            v1(
                b"whsec_0123456789abcdef",
                1_767_225_600,
                b"{\"events\":[1]}"
            ),
            v
        );
    }
}
