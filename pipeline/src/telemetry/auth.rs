//! The token that keeps the camera's picture private off loopback.
//!
//! On a loopback address nobody else can connect, so nothing is asked unless a token is
//! configured. On any other address the picture endpoints need a token (or an explicit
//! `expose_unauthenticated = true`), given as `Authorization: Bearer TOKEN` or as HTTP Basic's
//! password with any user name, which is what a browser asks a person for. The token comes from
//! an environment variable so it is never in a config file; it is compared in constant time and
//! never logged (`Token` has no `Debug`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper::header::HeaderValue;
use subtle::ConstantTimeEq;

use super::{TelemetryConfig, TelemetryError};
use crate::error::Invalid;

/// Shorter tokens can be guessed over the network.
pub(super) const MIN_TOKEN_CHARS: usize = 16;

/// Who may see the picture.
pub(super) enum Access {
    /// Anyone who can connect.
    Open,
    /// Whoever shows the token.
    Token(Token),
}

pub(super) struct Token(Vec<u8>);

/// Refuses a non-loopback address that would serve the picture to anyone, unless the config
/// says that is meant.
pub(super) fn check_exposure(config: &TelemetryConfig) -> Result<(), Invalid> {
    let exposed = !config.listen.ip().is_loopback()
        && config.token_env.is_none()
        && !config.expose_unauthenticated;
    Invalid::check(
        !exposed,
        "telemetry.token_env",
        "set (an environment variable holding a token) when telemetry.listen is not loopback, \
         or telemetry.expose_unauthenticated = true",
        format_args!("nothing, with listen = {}", config.listen),
    )
}

impl Access {
    /// Reads the token named by `telemetry.token_env`, if any.
    pub(super) fn from_config(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        let Some(var) = &config.token_env else {
            return Ok(Self::Open);
        };
        let token = std::env::var_os(var)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| TelemetryError::TokenUnset { var: var.clone() })?;
        let token = token.into_encoded_bytes();
        let len = String::from_utf8_lossy(&token).chars().count();
        if len < MIN_TOKEN_CHARS {
            return Err(TelemetryError::TokenShort {
                var: var.clone(),
                min: MIN_TOKEN_CHARS,
                len,
            });
        }
        Ok(Self::Token(Token(token)))
    }

    /// Whether a request with this `Authorization` header may pass.
    pub(super) fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        match self {
            Self::Open => true,
            Self::Token(token) => authorization.is_some_and(|value| token.is_in(value.as_bytes())),
        }
    }
}

impl Token {
    /// Whether an `Authorization` header's value carries the token.
    fn is_in(&self, authorization: &[u8]) -> bool {
        let Some((scheme, credentials)) = split_once(authorization, b' ') else {
            return false;
        };
        let credentials = credentials.trim_ascii();
        if scheme.eq_ignore_ascii_case(b"bearer") {
            return self.is(credentials);
        }
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return false;
        }
        let Ok(decoded) = STANDARD.decode(credentials) else {
            return false;
        };
        // `user:password`; the user name is not checked.
        split_once(&decoded, b':').is_some_and(|(_, password)| self.is(password))
    }

    fn is(&self, candidate: &[u8]) -> bool {
        // Unequal lengths answer at once: the length is no secret worth hiding.
        self.0.ct_eq(candidate).into()
    }
}

fn split_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == at)?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "correct-horse-battery-staple";

    fn admits(header: &str) -> bool {
        let access = Access::Token(Token(TOKEN.as_bytes().to_vec()));
        access.admits(Some(&HeaderValue::from_str(header).unwrap()))
    }

    #[test]
    fn the_token_passes_as_bearer_or_as_basic_password() {
        assert!(admits(&format!("Bearer {TOKEN}")));
        assert!(admits(&format!("bearer  {TOKEN} ")));
        let basic = |credentials: &str| format!("Basic {}", STANDARD.encode(credentials));
        assert!(admits(&basic(&format!("anyone:{TOKEN}"))));
        assert!(admits(&basic(&format!(":{TOKEN}"))));
        for wrong in [
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[1..]),
            "Bearer ".to_owned(),
            TOKEN.to_owned(),
            format!("Token {TOKEN}"),
            basic(TOKEN),
            basic(&format!("{TOKEN}:wrong")),
            "Basic not-base64!".to_owned(),
        ] {
            assert!(!admits(&wrong), "{wrong}");
        }
        let access = Access::Token(Token(TOKEN.as_bytes().to_vec()));
        assert!(!access.admits(None));
        assert!(Access::Open.admits(None));
    }

    #[test]
    fn only_loopback_may_go_without_a_token() {
        let config = |listen: &str, token_env: Option<&str>, expose: bool| TelemetryConfig {
            listen: listen.parse().unwrap(),
            token_env: token_env.map(str::to_owned),
            expose_unauthenticated: expose,
            ..TelemetryConfig::default()
        };
        assert!(check_exposure(&config("127.0.0.1:9898", None, false)).is_ok());
        assert!(check_exposure(&config("[::1]:9898", None, false)).is_ok());
        assert!(check_exposure(&config("0.0.0.0:9898", Some("T"), false)).is_ok());
        assert!(check_exposure(&config("0.0.0.0:9898", None, true)).is_ok());
        let err = check_exposure(&config("0.0.0.0:9898", None, false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "telemetry.token_env must be set (an environment variable holding a token) when \
             telemetry.listen is not loopback, or telemetry.expose_unauthenticated = true, got \
             nothing, with listen = 0.0.0.0:9898"
        );
    }

    #[test]
    fn a_missing_or_short_token_is_refused_naming_the_variable() {
        // Names of this test's own: tests run in processes of their own (nextest), and no other
        // test reads these.
        let config = |var: &str| TelemetryConfig {
            token_env: Some(var.into()),
            ..TelemetryConfig::default()
        };
        let err = |var: &str| Access::from_config(&config(var)).err().unwrap().to_string();
        assert_eq!(
            err("SCENED_TEST_TOKEN_UNSET"),
            "telemetry.token_env: the environment variable SCENED_TEST_TOKEN_UNSET is not set"
        );
        std::env::set_var("SCENED_TEST_TOKEN_SHORT", "hunter2");
        assert_eq!(
            err("SCENED_TEST_TOKEN_SHORT"),
            "telemetry.token_env: the token in SCENED_TEST_TOKEN_SHORT must be at least 16 \
             characters, got 7"
        );
        std::env::set_var("SCENED_TEST_TOKEN_GOOD", TOKEN);
        let access = Access::from_config(&config("SCENED_TEST_TOKEN_GOOD")).unwrap();
        assert!(matches!(access, Access::Token(_)));
        assert!(matches!(
            Access::from_config(&TelemetryConfig::default()).unwrap(),
            Access::Open
        ));
    }
}
