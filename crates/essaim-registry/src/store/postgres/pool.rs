//! A few connections to PostgreSQL, opened on demand and reused.
//!
//! Why a pool of our own: a change needs a connection of its own for its transaction,
//! and reads should not wait behind a change; a handful of connections kept open does
//! that. The pool holds at most [`MAX_CONNECTIONS`]; a caller waits for a permit
//! rather than opening more. A connection whose socket closed (a restarted server, a
//! terminated backend) is dropped when it comes back or is taken, and the next caller
//! opens a new one, so the store recovers from a server restart without being reopened.
//! Every connection goes through `essaim_connect_postgres::PgTarget`, the one way
//! essaim connects to PostgreSQL (TLS asked for in the URL, libpq's way).

use crate::error::RegistryError;
use essaim_connect_postgres::PgTarget;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// Most connections one store holds open.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest one connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An open connection and the task that drives its socket (it ends once the client is
/// dropped).
struct Connection {
    client: Client,
    _driver: JoinHandle<()>,
}

/// The store's connections.
pub(super) struct Pool {
    target: PgTarget,
    /// Where, without the password: for errors.
    location: String,
    /// Connections not in use. A plain mutex: held only to push or pop, never across
    /// an `.await`.
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Pool")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// A connection taken from the pool; it goes back when dropped (unless closed).
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    connection: Option<Connection>,
    _permit: SemaphorePermit<'a>,
}

impl Pool {
    /// Parses `url`; connects nothing yet.
    pub(super) fn new(url: &str, location: String) -> Result<Pool, RegistryError> {
        let mut target = PgTarget::parse(url).map_err(|error| RegistryError::StoreLocation {
            location: location.clone(),
            reason: error.to_string(),
        })?;
        target.connect_timeout(CONNECT_TIMEOUT);
        Ok(Pool {
            target,
            location,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_CONNECTIONS),
        })
    }

    /// Takes an open connection, or opens one.
    pub(super) async fn get(&self) -> Result<Pooled<'_>, RegistryError> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        let reused = {
            let mut idle = self.idle.lock().expect("the pool's lock is never poisoned");
            idle.retain(|connection| !connection.client.is_closed());
            idle.pop()
        };
        let connection = match reused {
            Some(connection) => connection,
            None => {
                let (client, driver) = self.target.connect().await.map_err(|source| {
                    RegistryError::StoreUnreachable {
                        location: self.location.clone(),
                        source,
                    }
                })?;
                Connection {
                    client,
                    _driver: driver,
                }
            }
        };
        Ok(Pooled {
            pool: self,
            connection: Some(connection),
            _permit: permit,
        })
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self
            .connection
            .as_ref()
            .expect("present until dropped")
            .client
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self
            .connection
            .as_mut()
            .expect("present until dropped")
            .client
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if connection.client.is_closed() {
            return;
        }
        self.pool
            .idle
            .lock()
            .expect("the pool's lock is never poisoned")
            .push(connection);
    }
}
