//! Verifies the ERP's JWTs (SPEC §5 "Tokens").
//!
//! Exactly one algorithm is accepted, fixed by the configured key: HS256 for a
//! secret, RS256 or ES256 for a public key file. A token whose header names
//! another algorithm (including `none`, or HS256 signed with the public key as
//! the secret: algorithm confusion) is refused before its signature is read.

use std::path::Path;

use jsonwebtoken::{
    decode, decode_header, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

/// Clock leeway for `exp`; SPEC allows at most 1 s.
pub const LEEWAY_SECS: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tid: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Why a token was refused. What a client is told is decided where it is
/// told, never from this error's text or its source, so a refusal says
/// nothing about how the token was checked: a tab hears "token expired" or
/// "invalid token" (`net/session.rs`), the admin API answers "missing or
/// invalid credentials" (`api/extract.rs`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    /// The header names another algorithm than the configured key's.
    #[error("token algorithm {0:?} not accepted")]
    Algorithm(Algorithm),
    /// Not a JWT, a bad signature, a missing or mistyped claim: the source
    /// says which.
    #[error("invalid token")]
    Invalid(#[source] jsonwebtoken::errors::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read public key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} holds neither an RSA nor an EC (P-256) public key in PEM")]
    Format(String),
}

/// Checks tokens against the one configured key.
pub struct Verifier {
    key: DecodingKey,
    alg: Algorithm,
}

impl Verifier {
    pub fn hs256(secret: &[u8]) -> Self {
        Verifier {
            key: DecodingKey::from_secret(secret),
            alg: Algorithm::HS256,
        }
    }

    /// Reads a PEM public key; RSA means RS256, EC means ES256.
    pub fn from_public_key_file(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_public_key_pem(&pem).ok_or_else(|| KeyError::Format(path.display().to_string()))
    }

    /// A PEM public key already in memory; RSA means RS256, EC means ES256,
    /// anything else `None`.
    pub fn from_public_key_pem(pem: &[u8]) -> Option<Self> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Some(Verifier {
                key,
                alg: Algorithm::RS256,
            });
        }
        DecodingKey::from_ec_pem(pem).ok().map(|key| Verifier {
            key,
            alg: Algorithm::ES256,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The claims of a valid, unexpired token.
    ///
    /// # Errors
    /// [`AuthError::Expired`] past `exp` (+ leeway), [`AuthError::Algorithm`]
    /// for any algorithm but the configured one, [`AuthError::Invalid`] for
    /// everything else (bad signature, missing claims, not a JWT).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(AuthError::Invalid)?;
        if header.alg != self.alg {
            return Err(AuthError::Algorithm(header.alg));
        }
        let mut v = Validation::new(self.alg);
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "sub"]);
        v.validate_aud = false;
        match decode::<Claims>(token, &self.key, &v) {
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(AuthError::Expired),
                _ => Err(AuthError::Invalid(e)),
            },
        }
    }
}

/// Mints an HS256 token (the `token` subcommand, `--dev`, and tests).
pub fn mint_hs256(secret: &[u8], tenant: &str, user: &str, now_secs: u64, ttl_secs: u64) -> String {
    let claims = Claims {
        sub: user.to_owned(),
        tid: tenant.to_owned(),
        exp: now_secs + ttl_secs,
        iat: Some(now_secs),
    };
    // HS256 signing with any byte string as key cannot fail.
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing does not fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn accepts_a_good_token() {
        let v = Verifier::hs256(b"s3cret");
        let t = mint_hs256(b"s3cret", "acme", "u1", now(), 60);
        let c = v.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.tid.as_str()), ("u1", "acme"));
    }

    #[test]
    fn refuses_expired_wrong_key_and_alg_none() {
        let v = Verifier::hs256(b"s3cret");
        let old = mint_hs256(b"s3cret", "acme", "u1", now() - 100, 10);
        assert!(matches!(v.verify(&old), Err(AuthError::Expired)));
        let other = mint_hs256(b"other", "acme", "u1", now(), 60);
        assert!(matches!(v.verify(&other), Err(AuthError::Invalid(_))));
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(format!(
                r#"{{"sub":"u1","tid":"acme","exp":{}}}"#,
                now() + 60
            ))
        );
        assert!(v.verify(&none).is_err());
    }

    #[test]
    fn refuses_a_token_without_exp() {
        let v = Verifier::hs256(b"k");
        #[derive(Serialize)]
        struct NoExp<'a> {
            sub: &'a str,
            tid: &'a str,
        }
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &NoExp { sub: "u", tid: "t" },
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(matches!(v.verify(&t), Err(AuthError::Invalid(_))));
    }

    proptest::proptest! {
        /// Ids are any text the ERP chose: escapes, quotes, non-ASCII.
        #[test]
        fn any_minted_claims_verify_to_themselves(tid in "\\PC{0,16}", sub in "\\PC{0,16}") {
            let v = Verifier::hs256(b"k");
            let c = v.verify(&mint_hs256(b"k", &tid, &sub, now(), 60)).unwrap();
            proptest::prop_assert_eq!((c.tid, c.sub), (tid, sub));
        }
    }
}
