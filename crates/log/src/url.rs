//! Parsing of `--log` URLs: `sqlite://PATH` (or a bare path) and `kafka://HOST:PORT[,HOST:PORT]`.

use std::path::PathBuf;

use crate::{Error, Result};

/// Where the event log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogUrl {
    /// The embedded SQLite log at this file path.
    Sqlite(PathBuf),
    /// A Kafka cluster, by its bootstrap servers (`host:port,host:port`).
    Kafka(String),
}

impl LogUrl {
    /// Parses `sqlite://PATH`, `sqlite:PATH`, `kafka://HOST:PORT[,HOST:PORT]` or a bare path.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for an unknown scheme or a Kafka URL without brokers.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: s.to_owned(),
            reason: reason.into(),
        };
        if let Some(rest) = s.strip_prefix("kafka://") {
            let brokers = rest.trim_end_matches('/');
            if brokers.is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
                return Err(invalid("expected kafka://HOST:PORT[,HOST:PORT]"));
            }
            return Ok(LogUrl::Kafka(brokers.to_owned()));
        }
        if let Some(rest) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            if rest.is_empty() {
                return Err(invalid("expected sqlite://PATH"));
            }
            return Ok(LogUrl::Sqlite(PathBuf::from(rest)));
        }
        if s.contains("://") {
            return Err(invalid(
                "unknown scheme; use sqlite://PATH or kafka://HOST:PORT",
            ));
        }
        Ok(LogUrl::Sqlite(PathBuf::from(s)))
    }
}

impl std::fmt::Display for LogUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            LogUrl::Kafka(b) => write!(f, "kafka://{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            LogUrl::parse("kafka://a:1,b:2").ok(),
            Some(LogUrl::Kafka("a:1,b:2".into()))
        );
        assert_eq!(
            LogUrl::parse("sqlite:///tmp/x.db").ok(),
            Some(LogUrl::Sqlite("/tmp/x.db".into()))
        );
        assert_eq!(
            LogUrl::parse("data/x.db").ok(),
            Some(LogUrl::Sqlite("data/x.db".into()))
        );
        assert!(LogUrl::parse("kafka://").is_err());
        assert!(LogUrl::parse("kafka://nohostport").is_err());
        assert!(LogUrl::parse("redis://x").is_err());
    }
}
