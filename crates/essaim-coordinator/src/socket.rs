//! The coordinator's listening socket, bound once for the life of the process.
//!
//! A highly available coordinator changes role (standby → leader → standby) without
//! leaving its process, and each role has its own HTTP server. If each server bound the
//! port itself, the port would be closed between two roles — while the new leader opens
//! its journal, or for a whole lease after stepping down — and a client connecting then
//! would be refused, although this process is about to answer. Every server accepts on
//! a duplicate of one socket instead: the port stays open while the process lives, and a
//! connection made between two roles waits in the kernel's backlog for the next server.

use crate::CoordinatorError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long [`ListenSocket::bind`] retries a port still held by a process that just
/// exited (a supervisor restarting the coordinator at once).
const BIND_ATTEMPTS: u32 = 50;
const BIND_RETRY: Duration = Duration::from_millis(100);

/// A bound, listening socket that servers accept on one after another.
#[derive(Debug, Clone)]
pub struct ListenSocket {
    socket: Arc<std::net::TcpListener>,
    address: SocketAddr,
}

impl ListenSocket {
    /// Binds `listen`, retrying for a few seconds while the port is taken.
    pub async fn bind(listen: SocketAddr) -> Result<Self, CoordinatorError> {
        let mut attempts = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(listen).await {
                Ok(listener) => break listener,
                Err(source) if attempts >= BIND_ATTEMPTS => {
                    return Err(CoordinatorError::Listen {
                        address: listen,
                        source,
                    });
                }
                Err(_) => {
                    attempts += 1;
                    tokio::time::sleep(BIND_RETRY).await;
                }
            }
        };
        let listen_error = |source| CoordinatorError::Listen {
            address: listen,
            source,
        };
        let address = listener.local_addr().map_err(listen_error)?;
        let socket = listener.into_std().map_err(listen_error)?;
        Ok(Self {
            socket: Arc::new(socket),
            address,
        })
    }

    /// The address it is bound to (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// A listener for one server on a duplicate of the socket: dropping it leaves the
    /// socket open for the next one.
    pub(crate) fn listener(&self) -> Result<tokio::net::TcpListener, CoordinatorError> {
        let listen_error = |source| CoordinatorError::Listen {
            address: self.address,
            source,
        };
        // The duplicate shares the original's file status, non-blocking included.
        let duplicate = self.socket.try_clone().map_err(listen_error)?;
        tokio::net::TcpListener::from_std(duplicate).map_err(listen_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_connection_made_between_two_servers_is_accepted_by_the_second() {
        let socket = ListenSocket::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        drop(socket.listener().unwrap());
        // No server accepts now: the connection waits in the backlog, not refused.
        let mut client = tokio::net::TcpStream::connect(socket.local_addr())
            .await
            .expect("the port stays open between servers");
        client.write_all(b"ping").await.unwrap();
        let next = socket.listener().unwrap();
        let (mut accepted, _) = next.accept().await.unwrap();
        let mut bytes = [0; 4];
        accepted.read_exact(&mut bytes).await.unwrap();
        assert_eq!(&bytes, b"ping");
    }
}
