//! Bearer-token authentication with scopes.
//!
//! Tokens come from configuration ([`ApiToken`]); each grants one or more [`Scope`]s, and
//! `admin` implies `write`, which implies `read`. Presented tokens are compared with every
//! configured one through SHA-256 digests in constant time, so neither the content nor the
//! length of a configured token leaks through timing. With no token configured the API is
//! open — the binary then serves it on loopback only ([`ApiConfig::check_bind`]).

use std::net::SocketAddr;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiError, ApiState};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read projections (every `GET`).
    Read,
    /// Queue and cancel tasks (and every other non-`GET` route unless it needs `admin`).
    Write,
    /// Register, pause and resume agents.
    Admin,
}

impl Scope {
    /// `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

/// One API token from configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds it (logged and recorded as `requested_by`; never the secret).
    pub name: String,
    /// The secret presented as `Authorization: Bearer <token>`.
    pub token: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The authenticated caller, as a request extension for handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name, or `anonymous` when the API runs without tokens.
    pub name: String,
}

/// The API's security settings.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Accepted tokens. Empty: no authentication, loopback only.
    pub tokens: Vec<ApiToken>,
}

impl ApiConfig {
    /// Refuses to serve an API without tokens on a non-loopback address.
    ///
    /// # Errors
    ///
    /// A message saying why, for the operator.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), String> {
        if self.tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(format!(
                "refusing to serve the API on {addr} without authentication: configure \
                 api_tokens, or listen on a loopback address (127.0.0.1)"
            ));
        }
        Ok(())
    }

    /// Whether requests must carry a token.
    pub fn requires_auth(&self) -> bool {
        !self.tokens.is_empty()
    }

    fn find(&self, presented: &str) -> Option<&ApiToken> {
        let digest = Sha256::digest(presented.as_bytes());
        let mut found = None;
        // Compare against every token so that timing does not tell which one matched.
        for t in &self.tokens {
            let candidate = Sha256::digest(t.token.as_bytes());
            if bool::from(candidate.ct_eq(&digest)) {
                found = Some(t);
            }
        }
        found
    }
}

/// The scope a route needs: `admin` for agent registration and pause/resume, `read` for
/// `GET`/`HEAD`, `write` otherwise.
pub fn required_scope(method: &Method, route: &str) -> Scope {
    let admin = (method == Method::POST && route == "/api/v1/agents")
        || route.ends_with("/pause")
        || route.ends_with("/resume");
    if admin {
        Scope::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Write
    }
}

/// Middleware: 401 without a valid token, 403 without the route's scope.
pub(crate) async fn require(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let config = state.config();
    if !config.requires_auth() {
        request.extensions_mut().insert(Caller {
            name: "anonymous".to_owned(),
        });
        return Ok(next.run(request).await);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let token = config.find(presented).ok_or(ApiError::Unauthorized)?;
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |m| m.as_str().to_owned(),
    );
    let needed = required_scope(request.method(), &route);
    let granted = token.scopes.iter().any(|s| *s >= needed);
    if !granted {
        return Err(ApiError::Forbidden {
            token: token.name.clone(),
            scope: needed.as_str(),
        });
    }
    request.extensions_mut().insert(Caller {
        name: token.name.clone(),
    });
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_imply_lower_ones_and_routes_need_the_right_one() {
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
        assert_eq!(required_scope(&Method::GET, "/api/v1/agents"), Scope::Read);
        assert_eq!(
            required_scope(&Method::POST, "/api/v1/agents"),
            Scope::Admin
        );
        assert_eq!(
            required_scope(&Method::POST, "/api/v1/agents/{id}/pause"),
            Scope::Admin
        );
        assert_eq!(
            required_scope(&Method::POST, "/api/v1/agents/{id}/tasks"),
            Scope::Write
        );
        assert_eq!(
            required_scope(&Method::DELETE, "/api/v1/tasks/{id}"),
            Scope::Write
        );
    }

    #[test]
    fn only_configured_tokens_match_and_binding_needs_tokens_off_loopback() {
        let config = ApiConfig {
            tokens: vec![ApiToken {
                name: "ci".into(),
                token: "s3cret".into(),
                scopes: vec![Scope::Read],
            }],
        };
        assert_eq!(config.find("s3cret").map(|t| t.name.as_str()), Some("ci"));
        assert!(config.find("s3cre").is_none());
        assert!(config.find("").is_none());
        assert!(!format!("{:?}", config).contains("s3cret"), "Debug redacts");
        let open = ApiConfig::default();
        assert!(
            open.check_bind("127.0.0.1:8080".parse().expect("a"))
                .is_ok()
        );
        assert!(open.check_bind("[::1]:8080".parse().expect("a")).is_ok());
        assert!(open.check_bind("0.0.0.0:8080".parse().expect("a")).is_err());
        assert!(
            config
                .check_bind("0.0.0.0:8080".parse().expect("a"))
                .is_ok()
        );
    }
}
