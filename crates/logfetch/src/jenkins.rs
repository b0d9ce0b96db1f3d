//! Jenkins: a build's `consoleText` (plain text), when the notification did not carry
//! the log. Only builds under the configured Jenkins URL are fetched: the build URL comes
//! from a webhook, and Sentinel must not be made to fetch arbitrary addresses.

use std::time::Duration;

use crate::download::{Download, read_reqwest};
use crate::{Error, Result};

/// Jenkins client for console logs.
#[derive(Debug, Clone)]
pub struct JenkinsClient {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
    max_download: usize,
}

impl JenkinsClient {
    /// A client for builds under `base_url`, with optional Basic auth (user, API token).
    ///
    /// # Errors
    ///
    /// The HTTP client cannot be built.
    pub fn new(
        base_url: &str,
        auth: Option<(String, String)>,
        timeout: Duration,
        max_download: usize,
    ) -> Result<JenkinsClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("Jenkins client: {e}")))?;
        let mut base = base_url.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(JenkinsClient {
            http,
            base,
            auth,
            max_download: max_download.max(1),
        })
    }

    /// The console log of the build at `build_url` (ending with `/`).
    ///
    /// # Errors
    ///
    /// `Config` for a build outside the configured Jenkins, remote errors.
    pub async fn console_text(&self, build_url: &str) -> Result<Download> {
        if !build_url.starts_with(&self.base) || build_url.contains("/../") {
            return Err(Error::Config(format!(
                "build URL {build_url:?} is not under the configured Jenkins URL {:?}",
                self.base
            )));
        }
        let what = format!("console of {build_url}");
        let mut req = self.http.get(format!("{build_url}consoleText"));
        if let Some((user, token)) = &self.auth {
            req = req.basic_auth(user, Some(token));
        }
        let resp = req.send().await.map_err(|e| Error::Unavailable {
            what: what.clone(),
            message: e.without_url().to_string(),
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(Error::from_status(
                &what,
                status.as_u16(),
                &body,
                status.as_u16() == 429,
            ));
        }
        read_reqwest(resp, self.max_download)
            .await
            .map_err(|e| Error::Unavailable {
                what,
                message: e.without_url().to_string(),
            })
    }
}
