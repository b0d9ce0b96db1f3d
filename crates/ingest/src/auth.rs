//! Authentication of webhook deliveries: HMAC-SHA256 signatures over the raw body and
//! shared tokens, always compared in constant time (`subtle`), always before the body is
//! parsed.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Why a delivery was not authenticated (all answered 401; the reason is logged and sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No secret is configured for this endpoint: it refuses everything.
    NotConfigured,
    /// The signature or token header is missing.
    Missing,
    /// The header is not in the expected format.
    Malformed,
    /// The signature or token does not match.
    Mismatch,
}

impl AuthError {
    /// A short, stable reason for the JSON error body.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::NotConfigured => "no secret is configured for this endpoint",
            AuthError::Missing => "signature or token missing",
            AuthError::Malformed => "signature or token malformed",
            AuthError::Mismatch => "signature or token does not match",
        }
    }
}

/// Verifies a GitHub-style `sha256=<hex>` signature of `body` under `secret`.
///
/// # Errors
///
/// [`AuthError`] when the header is missing, malformed or does not match.
pub fn verify_sha256_signature(
    secret: &Secret,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(AuthError::Malformed)?;
    let given = hex::decode(hex_sig).map_err(|_| AuthError::Malformed)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose()).map_err(|_| AuthError::Malformed)?;
    mac.update(body);
    // `verify_slice` compares in constant time (subtle underneath).
    mac.verify_slice(&given).map_err(|_| AuthError::Mismatch)
}

/// The `sha256=<hex>` signature of `body` under `secret` (for tests, benchmarks and
/// clients of the generic endpoint).
pub fn sign_sha256(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Compares a presented token with the configured one in constant time. Both are hashed
/// first, so neither the contents nor the length of the secret leak through timing.
pub fn token_matches(secret: &Secret, presented: &[u8]) -> bool {
    use sha2::Digest;
    let want = Sha256::digest(secret.expose());
    let got = Sha256::digest(presented);
    bool::from(want.as_slice().ct_eq(got.as_slice()))
}

/// Checks a token header.
///
/// # Errors
///
/// [`AuthError::Missing`] or [`AuthError::Mismatch`].
pub fn verify_token(secret: &Secret, presented: Option<&str>) -> Result<(), AuthError> {
    let p = presented.ok_or(AuthError::Missing)?;
    if token_matches(secret, p.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

/// The password of an `Authorization: Basic …` header (the user name is not checked).
///
/// # Errors
///
/// [`AuthError::Malformed`] when the header is not Basic or not valid base64 `user:pass`.
pub fn basic_password(header: &str) -> Result<Vec<u8>, AuthError> {
    let (scheme, rest) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| AuthError::Malformed)?;
    let colon = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or(AuthError::Malformed)?;
    Ok(decoded[colon + 1..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published test vector ("Validating webhook deliveries").
    #[test]
    fn githubs_published_test_vector_verifies() {
        let secret = Secret::new("It's a Secret to Everybody").expect("secret");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            sign_sha256(secret.expose(), b"Hello, World!"),
            sig,
            "our signer agrees with GitHub's vector"
        );
        assert_eq!(
            verify_sha256_signature(&secret, b"Hello, World!", Some(sig)),
            Ok(())
        );
        assert_eq!(
            verify_sha256_signature(&secret, b"Hello, World?", Some(sig)),
            Err(AuthError::Mismatch)
        );
        let other = Secret::new("It's a Secret to Nobody").expect("secret");
        assert_eq!(
            verify_sha256_signature(&other, b"Hello, World!", Some(sig)),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            verify_sha256_signature(&secret, b"Hello, World!", None),
            Err(AuthError::Missing)
        );
        assert_eq!(
            verify_sha256_signature(&secret, b"Hello, World!", Some("sha1=abcd")),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            verify_sha256_signature(&secret, b"Hello, World!", Some("sha256=zz")),
            Err(AuthError::Malformed)
        );
        // A truncated signature is a mismatch, not a prefix match.
        assert_eq!(
            verify_sha256_signature(&secret, b"Hello, World!", Some(&sig[..21])),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn tokens_and_basic_auth() {
        let s = Secret::new("t0ken").expect("secret");
        assert_eq!(verify_token(&s, Some("t0ken")), Ok(()));
        assert_eq!(verify_token(&s, Some("t0ke")), Err(AuthError::Mismatch));
        assert_eq!(verify_token(&s, Some("t0ken2")), Err(AuthError::Mismatch));
        assert_eq!(verify_token(&s, None), Err(AuthError::Missing));
        // "jenkins:t0ken"
        assert_eq!(
            basic_password("Basic amVua2luczp0MGtlbg==").expect("basic"),
            b"t0ken"
        );
        assert_eq!(basic_password("Bearer abc"), Err(AuthError::Malformed));
        assert_eq!(basic_password("Basic !!!"), Err(AuthError::Malformed));
    }
}
