//! What the sink's tests share: a private PostgreSQL cluster per test and a results
//! table.
#![allow(dead_code)] // each test crate uses its own part

use std::time::Duration;

use anyhow::Result;
use essaim_connect_postgres::{Column, ColumnType, ResultTable, SinkConfig};
use essaim_testkit::server::ScriptServer;
use tokio_postgres::{Client, NoTls};

/// A private cluster of this test ([`essaim_testkit::server::postgres`]), stopped when
/// dropped.
pub struct Cluster {
    pub server: ScriptServer,
}

impl Cluster {
    /// Starts a fresh cluster, or returns `None` when PostgreSQL tests are skipped on
    /// purpose (`ESSAIM_SKIP_POSTGRES=1`).
    pub fn start() -> Option<Cluster> {
        let server = essaim_testkit::server::postgres()?;
        Some(Cluster { server })
    }

    pub async fn admin(&self) -> Result<Client> {
        let (client, connection) = tokio_postgres::connect(self.server.url(), NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    pub fn config(&self, pipeline: &str) -> SinkConfig {
        let mut config = SinkConfig::new(self.server.url(), pipeline);
        config.connection.backoff_base = Duration::from_millis(10);
        config.connection.backoff_max = Duration::from_millis(100);
        config.connection.connect_timeout = Duration::from_secs(2);
        config
    }
}

pub fn counts_table() -> ResultTable {
    ResultTable::new(
        "counts",
        vec![
            Column::new("record_key", ColumnType::Text),
            Column::new("count", ColumnType::BigInt),
            Column::new("sum", ColumnType::BigInt),
        ],
    )
    .expect("valid table")
}
