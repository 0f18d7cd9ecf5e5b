//! The ground floor's errors: what every layer may return or print, importing nothing of the
//! crate. A setting outside what it may be ([`Invalid`]), a TOML error on one line
//! ([`TomlError`]), and an error printed with its causes ([`Chain`]).

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// A TOML error on one line: toml's own message spans lines with a source excerpt, and the CLI
/// promises one line, so this keeps the message (which names the key) and the line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlError {
    pub line: Option<usize>,
    pub message: String,
}

impl TomlError {
    /// `e`, found in `text`.
    pub fn new(e: &toml::de::Error, text: &str) -> Self {
        Self {
            line: e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().to_owned(),
        }
    }
}

impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Error for TomlError {}

/// A setting outside what it may be: `<table>.<key> must be <expected>, got <value>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} must be {expected}, got {got}")]
pub struct Invalid {
    /// Where the setting is, e.g. `smooth.alpha` or `edges.infer.capacity`.
    pub key: String,
    pub expected: &'static str,
    pub got: String,
}

impl Invalid {
    /// `Ok` if `ok`, else the error for `key` holding `got`.
    pub fn check(
        ok: bool,
        key: &str,
        expected: &'static str,
        got: impl fmt::Display,
    ) -> Result<(), Self> {
        if ok {
            Ok(())
        } else {
            Err(Self {
                key: key.to_owned(),
                expected,
                got: got.to_string(),
            })
        }
    }

    /// The same error for the setting under `table`: `source.fps` in `cameras.porch`.
    pub fn within(mut self, table: &str) -> Self {
        self.key = format!("{table}.{}", self.key);
        self
    }

    /// The longest time a setting may give: a deadline this far ahead fits any clock.
    pub const MAX_SECONDS: f64 = 1e9;

    /// `seconds` as a duration, which must be more than zero (and not NaN) and at most
    /// [`MAX_SECONDS`](Self::MAX_SECONDS); one too short for a nanosecond is one.
    pub fn positive_seconds(key: &str, seconds: f64) -> Result<Duration, Self> {
        Self::check(seconds > 0.0, key, "more than 0", seconds)?;
        Self::check(
            seconds <= Self::MAX_SECONDS,
            key,
            "at most 1e9 (31 years)",
            seconds,
        )?;
        Ok(Duration::from_secs_f64(seconds).max(Duration::from_nanos(1)))
    }
}

/// An error and its sources, `outer: inner: …`, since library errors leave their source out
/// of their own message.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_is_named_by_its_table_and_key() {
        let err = Invalid::check(false, "smooth.alpha", "in (0, 1]", 1.5).unwrap_err();
        assert_eq!(err.to_string(), "smooth.alpha must be in (0, 1], got 1.5");
        assert!(Invalid::check(true, "smooth.alpha", "in (0, 1]", 0.3).is_ok());
        assert_eq!(
            Invalid::positive_seconds("stop.stall_seconds", 0.25),
            Ok(Duration::from_millis(250))
        );
        for seconds in [0.0, -1.0, f64::NAN] {
            let err = Invalid::positive_seconds("stop.stall_seconds", seconds).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("stop.stall_seconds must be more than 0, got {seconds}")
            );
        }
        // Past any deadline a clock can hold; too short for a nanosecond is one.
        for seconds in [1e10, f64::MAX, f64::INFINITY] {
            let err = Invalid::positive_seconds("stop.stall_seconds", seconds).unwrap_err();
            assert_eq!(err.expected, "at most 1e9 (31 years)");
        }
        assert_eq!(
            Invalid::positive_seconds("stop.stall_seconds", 5e-324),
            Ok(Duration::from_nanos(1))
        );
    }

    #[test]
    fn a_chain_prints_every_cause_in_order() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot open camera 0")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("device busy"));
        assert_eq!(
            Chain(&error).to_string(),
            "cannot open camera 0: device busy"
        );
    }
}
