//! A TCP proxy a test can cut: it forwards loopback connections to a target until
//! [`Proxy::cut`], which drops every connection and refuses new ones, as a network
//! partition between one process and a server would (the server's other clients are
//! unaffected); [`Proxy::heal`] lets connections through again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy from a loopback port to a target address.
pub struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding a new loopback port to `target` (`127.0.0.1:PORT`).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback can bind");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0);
        let task = tokio::spawn(accept(listener, target, open.clone(), cuts.clone()));
        Self {
            port,
            open,
            cuts,
            task,
        }
    }

    /// The proxy's URL with `scheme` (e.g. `http`).
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones until [`Proxy::heal`].
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn accept(
    listener: TcpListener,
    target: String,
    open: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        if !open.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let target = target.clone();
        let mut cut = cuts.subscribe();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&target).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::select! {
                _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
                _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
                _ = cut.changed() => {}
            }
        });
    }
}
