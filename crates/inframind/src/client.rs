//! Reporting outcomes to InfraMind over gRPC.

use std::time::Duration;

use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::proto::infra_mind_client::InfraMindClient;
use crate::proto::{Ack, AgentOutcome};
use crate::{Error, Result};

/// A `ReportAgentOutcome` client. The connection is made lazily and re-made after
/// InfraMind restarts, so a reporter outlives outages.
#[derive(Debug, Clone)]
pub struct Reporter {
    client: InfraMindClient<Channel>,
}

impl Reporter {
    /// A reporter for the InfraMind at `url` (`http://host:port`), each call bounded by
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not one.
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Config(format!("InfraMind URL {url:?}: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        Ok(Self {
            client: InfraMindClient::new(endpoint.connect_lazy()),
        })
    }

    /// Reports one outcome (one attempt).
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] when InfraMind refuses the report as invalid (retrying will not
    /// help); [`Error::Unavailable`] for everything else (down, timed out, overloaded).
    pub async fn report(&self, outcome: AgentOutcome) -> Result<Ack> {
        let mut client = self.client.clone();
        match client.report_agent_outcome(outcome).await {
            Ok(ack) => Ok(ack.into_inner()),
            Err(s) if matches!(s.code(), Code::InvalidArgument | Code::OutOfRange) => {
                Err(Error::Rejected(s.message().to_owned()))
            }
            Err(s) => Err(Error::Unavailable(format!(
                "{:?}: {}",
                s.code(),
                s.message()
            ))),
        }
    }
}
