//! The connection to PostgreSQL: connect on demand, retry transient failures with
//! backoff, and stop trying while the circuit breaker is open.
//!
//! One sink owns one connection (a pipeline task writes its batches in order, so a pool
//! would add nothing). After a transient failure the connection is dropped and the next
//! attempt opens a new one, since a broken socket or a terminated backend never
//! recovers. A failure that is the caller's fault (a bad row) is returned at once and
//! does not count against the breaker: PostgreSQL is fine.
use std::time::Duration;

use essaim_connect::{BreakerConfig, SharedBreaker};

use std::collections::HashMap;
use tokio::task::JoinHandle;

use tokio_postgres::{Client, Statement};
use tracing::warn;

use crate::error::PgSinkError;
use crate::tls::PgTarget;

/// How the sink reaches PostgreSQL and how hard it tries.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// A libpq-style URL or key=value string, e.g.
    /// `postgresql://postgres@127.0.0.1:5432/postgres`; `sslmode` and `sslrootcert`
    /// ask for TLS (see [`crate::tls`]).
    pub url: String,
    /// Timeout of one connect (default 5 s).
    pub connect_timeout: Duration,
    /// Retries of one operation after its first attempt (default 5).
    pub max_retries: u32,
    /// Delay before the first retry, doubled each time (default 50 ms).
    pub backoff_base: Duration,
    /// Longest delay between retries (default 2 s).
    pub backoff_max: Duration,
    /// The circuit breaker around the connection (by default a breaker of its own
    /// with [`BreakerConfig`]'s defaults); a runtime gives the sinks reaching one
    /// database a shared, observed one.
    pub breaker: SharedBreaker,
}

impl ConnectionConfig {
    /// Returns the defaults for `url`.
    pub fn new(url: impl Into<String>) -> ConnectionConfig {
        ConnectionConfig {
            url: url.into(),
            connect_timeout: Duration::from_secs(5),
            max_retries: 5,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            breaker: SharedBreaker::new(CONNECTOR, BreakerConfig::default()),
        }
    }
}

/// The `connector` of the breaker's labels.
pub const CONNECTOR: &str = "postgres";

/// A lazily opened connection behind a circuit breaker.
pub(crate) struct Connection {
    config: ConnectionConfig,
    breaker: SharedBreaker,
    client: Option<Client>,
    /// The task that drives the socket; it ends when the client is dropped.
    driver: Option<JoinHandle<()>>,
    /// Statements prepared on `client`, by their text: a batch's transaction sends its
    /// statements without a round trip each to prepare them.
    statements: HashMap<String, Statement>,
}

impl Connection {
    pub(crate) fn new(config: ConnectionConfig) -> Connection {
        let breaker = config.breaker.clone();
        Connection {
            config,
            breaker,
            client: None,
            driver: None,
            statements: HashMap::new(),
        }
    }

    pub(crate) fn breaker(&self) -> &SharedBreaker {
        &self.breaker
    }

    /// Returns a connected client, unless the breaker is open.
    ///
    /// Callers loop: `acquire`, run their statements, then hand the result to
    /// [`Self::settle`], until it returns a final result. (A loop in each caller rather
    /// than a helper taking an async closure keeps the callers' futures `Send`.)
    pub(crate) async fn acquire(&mut self) -> Result<&mut Client, PgSinkError> {
        if let Err(retry_in) = self.breaker.try_allow() {
            return Err(PgSinkError::CircuitOpen { retry_in });
        }
        self.connected().await
    }

    /// Like [`Connection::acquire`], with the statements `sql` prepared on the client
    /// (once per connection), in the same order.
    pub(crate) async fn acquire_prepared(
        &mut self,
        sql: &[&str],
    ) -> Result<(&mut Client, Vec<Statement>), PgSinkError> {
        if let Err(retry_in) = self.breaker.try_allow() {
            return Err(PgSinkError::CircuitOpen { retry_in });
        }
        self.connected().await?;
        let client = self.client.as_mut().expect("connected just above");
        let mut prepared = Vec::with_capacity(sql.len());
        for text in sql {
            if let Some(statement) = self.statements.get(*text) {
                prepared.push(statement.clone());
                continue;
            }
            let statement = client
                .prepare(text)
                .await
                .map_err(|source| PgSinkError::Postgres {
                    action: "prepare",
                    source,
                })?;
            self.statements
                .insert((*text).to_owned(), statement.clone());
            prepared.push(statement);
        }
        Ok((client, prepared))
    }

    /// Accounts for one attempt's `result`: returns it when it is final (a success, a
    /// caller's error, an open breaker, or retries exhausted), else waits for the backoff
    /// and returns `None` so that the caller tries again.
    pub(crate) async fn settle<T>(
        &mut self,
        action: &'static str,
        retry: &mut u32,
        result: Result<T, PgSinkError>,
    ) -> Option<Result<T, PgSinkError>> {
        let error = match result {
            Ok(value) => {
                self.breaker.on_success();
                return Some(Ok(value));
            }
            // No attempt was made: nothing to count.
            Err(error @ PgSinkError::CircuitOpen { .. }) => return Some(Err(error)),
            // PostgreSQL answered: the connection is fine, the request is not.
            Err(error) if !error.is_transient() => return Some(Err(error)),
            Err(error) => error,
        };
        self.breaker.on_failure();
        self.disconnect().await;
        if *retry >= self.config.max_retries {
            return Some(Err(error));
        }
        let delay =
            essaim_connect::backoff(*retry, self.config.backoff_base, self.config.backoff_max);
        warn!(action, retry = *retry, error = %essaim_connect::error_chain(&error), ?delay, "postgresql call failed, retrying");
        tokio::time::sleep(delay).await;
        *retry += 1;
        None
    }

    async fn connected(&mut self) -> Result<&mut Client, PgSinkError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.disconnect().await;
        }
        if self.client.is_none() {
            let mut target = PgTarget::parse(&self.config.url)?;
            target.connect_timeout(self.config.connect_timeout);
            let (client, driver) =
                target
                    .connect()
                    .await
                    .map_err(|source| PgSinkError::Postgres {
                        action: "connect",
                        source,
                    })?;
            self.driver = Some(driver);
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected just above"))
    }

    /// Drops the client and waits for its driver task to end.
    pub(crate) async fn disconnect(&mut self) {
        self.client = None;
        self.statements.clear();
        if let Some(driver) = self.driver.take() {
            // The driver ends once its client is gone; it never panics.
            let _ = driver.await;
        }
    }
}
