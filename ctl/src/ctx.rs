//! What every command needs: where the agent is and how to print.

use std::time::Duration;

use berth::client::Address;
use berth::v1::{
    agent_client::AgentClient, containers_client::ContainersClient, events_client::EventsClient,
    images_client::ImagesClient,
};
use tonic::transport::Channel;

use crate::cli::OutputFormat;
use crate::error::{Error, Result, EXIT_BERTHCTL};

/// How long to try to reach the agent before giving up; a TCP address that
/// drops packets would otherwise hang berthctl for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The global options, shared by all commands.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The agent's address as the user gave it.
    pub host: String,
    /// TLS settings for an https:// address.
    pub tls: Option<berth::client::ClientTls>,
    /// How to print results.
    pub output: OutputFormat,
}

impl Ctx {
    /// True when results are printed as JSON lines.
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// Connects to the agent. Failing to do so is exit status 125, like any
    /// other way berthctl cannot reach the agent.
    pub async fn channel(&self) -> Result<Channel> {
        let addr = Address::parse(&self.host)
            .map_err(|m| Error::WithCode(EXIT_BERTHCTL, Box::new(Error::Message(m))))?;
        let connect = berth::client::connect_with(&addr, self.tls.as_ref());
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(ch)) => Ok(ch),
            Ok(Err(e)) => Err(Error::connect(&addr, &e)),
            Err(_) => Err(Error::Connect {
                addr: addr.to_string(),
                reason: format!("no answer within {} seconds", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    }

    /// A Containers client.
    pub async fn containers(&self) -> Result<ContainersClient<Channel>> {
        Ok(ContainersClient::new(self.channel().await?))
    }

    /// An Images client.
    pub async fn images(&self) -> Result<ImagesClient<Channel>> {
        Ok(ImagesClient::new(self.channel().await?))
    }

    /// An Events client.
    pub async fn events(&self) -> Result<EventsClient<Channel>> {
        Ok(EventsClient::new(self.channel().await?))
    }

    /// An Agent client.
    pub async fn agent(&self) -> Result<AgentClient<Channel>> {
        Ok(AgentClient::new(self.channel().await?))
    }
}

/// The error for a response that lacks a field the API promises.
pub fn missing(what: &str) -> Error {
    Error::Message(format!("berthd sent an incomplete response (no {what})"))
}

/// The results of [`for_each`].
#[derive(Debug)]
pub struct Each<T> {
    /// The results of the items that succeeded, in order.
    pub values: Vec<T>,
    /// Whether any item failed (its error has been printed).
    pub failed: bool,
}

impl<T> Each<T> {
    /// The values, or exit status 1 if any item failed.
    pub fn into_result(self) -> Result<Vec<T>> {
        if self.failed {
            Err(Error::Exit(1))
        } else {
            Ok(self.values)
        }
    }
}

/// Runs `f` for each item, printing each failure as it happens and going on
/// with the rest, as `docker rm a b c` does; stops at once if the agent
/// becomes unreachable, since every other item would fail the same way.
pub async fn for_each<T, F, Fut>(items: &[String], mut f: F) -> Result<Each<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut each = Each {
        values: Vec::with_capacity(items.len()),
        failed: false,
    };
    for item in items {
        match f(item.clone()).await {
            Ok(v) => each.values.push(v),
            Err(e) if e.exit_code() == EXIT_BERTHCTL => return Err(e),
            Err(e) => {
                report(&e);
                each.failed = true;
            }
        }
    }
    Ok(each)
}

/// Prints an error as berthctl's one-line message on stderr.
pub fn report(e: &Error) {
    if !e.is_silent() {
        eprintln!("berthctl: {e}");
    }
}
