//! Tokens: where they come from (a [`TokenProvider`] the application
//! supplies) and when to replace one (`exp` read from the JWT payload).
//!
//! The client never verifies a token: it only needs `exp` to know when to
//! ask for the next one, and the hub is the one that must not be fooled.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Any error a token provider reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future a [`TokenProvider`] returns.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;

/// Supplies JWTs: once for every `hello` (first connection and every
/// reconnection) and again shortly before the current token's `exp`.
///
/// A provider is async because a real one asks the ERP backend, and it is
/// called again rather than handed a token once because tokens are
/// short-lived and a reconnection hours later needs a fresh one. Any
/// `Fn() -> impl Future<Output = Result<String, E>>` closure is a provider.
pub trait TokenProvider: Send + Sync + 'static {
    fn token(&self) -> TokenFuture;
}

impl<F, Fut, E> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn token(&self) -> TokenFuture {
        let fut = self();
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// URL-safe base64 as JWTs use it; padding is tolerated because some
/// issuers add it.
const JWT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `exp` claim of a JWT, unverified; `None` if the token is not a JWT
/// or has no numeric `exp` (then the client never refreshes and relies on
/// reconnecting after 4001).
pub(crate) fn expiry(jwt: &str) -> Option<SystemTime> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = JWT_B64.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    (exp.is_finite() && exp >= 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(exp))
}

/// The shortest time between two refreshes: a provider that hands back the
/// same token must not turn the refresh timer into a busy loop.
const MIN_REFRESH_DELAY: Duration = Duration::from_millis(500);

/// How long from `now` until the token expiring at `exp` should be
/// replaced: a quarter of its remaining life before `exp`, at most
/// `max_margin` before it, so a one-hour token is refreshed a minute early
/// and a three-second one still has most of a second of slack for the
/// provider's round trip.
pub(crate) fn refresh_delay(exp: SystemTime, now: SystemTime, max_margin: Duration) -> Duration {
    let remaining = exp.duration_since(now).unwrap_or_default();
    let margin = (remaining / 4).min(max_margin);
    (remaining - margin).max(MIN_REFRESH_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn expiry_reads_exp_without_verifying() {
        let t = jwt(r#"{"sub":"ann","tid":"acme","exp":1700000000}"#);
        assert_eq!(
            expiry(&t),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }

    #[test]
    fn expiry_is_none_for_what_is_not_a_jwt_with_exp() {
        assert_eq!(expiry("opaque"), None);
        assert_eq!(expiry("a.!!!.c"), None);
        assert_eq!(expiry(&jwt(r#"{"sub":"ann"}"#)), None);
        assert_eq!(expiry(&jwt(r#"{"exp":"soon"}"#)), None);
    }

    #[test]
    fn refresh_comes_before_exp_and_never_in_a_busy_loop() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let hour = Duration::from_secs(3600);
        let minute = Duration::from_secs(60);
        assert_eq!(refresh_delay(now + hour, now, minute), hour - minute);
        assert_eq!(
            refresh_delay(now + Duration::from_secs(3), now, minute),
            Duration::from_millis(2250)
        );
        assert_eq!(refresh_delay(now, now, minute), MIN_REFRESH_DELAY);
        assert_eq!(refresh_delay(now - hour, now, minute), MIN_REFRESH_DELAY);
    }
}
