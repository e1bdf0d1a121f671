//! What essaim's tests share, so that no test file carries its own copy: its one job is
//! to be the scaffolding of tests. Only tests and test harnesses depend on it (as a
//! dev-dependency); production code never does.
//!
//! | module | what it gives a test |
//! |---|---|
//! | [`server`] | a NATS, PostgreSQL, Kafka-protocol or etcd server started by the project's `scripts/X.sh start DIR`, stopped on drop, its log printed when the test fails |
//! | [`docker`] | Docker for the container tests: is an engine there, commands that must succeed, the binary packaged for an image, HTTP GETs to published ports |
//! | [`compose`] | a compose project of `deploy/compose/` under a name of the test's own, taken down with its volumes on drop |
//! | [`deadline`] | named deadlines and timeouts: waits poll, and fail naming what they waited for |
//! | [`http`] | one plain HTTP/1.0 request (a REST call with a token and a JSON body) |
//! | [`process`] | one child process with a log file, killed on drop; free ports; an HTTP status probe |
//! | [`cli`] | one-shot runs of a binary, with no `ESSAIM_*` variable inherited |
//! | [`cluster`] | a coordinator and workers of the built `essaim` binary, with SIGKILL, SIGSTOP/SIGCONT and restart helpers |
//! | [`etcd_cluster`] | an etcd cluster of several members from `scripts/etcd.sh`, members killed and restarted |
//! | [`ha`] | coordinators elected through etcd and workers given every coordinator URL, for failover tests |
//! | [`proxy`] | a TCP proxy the test cuts and heals: a network partition between one process and a server |
//! | [`oracle`] | expected outputs that several tests compute (word counts) |
//! | [`tmpfs`] | a small tmpfs a test fills to the last byte: a real full disk for one process |
//! | [`clock`] | a process's wall clock a test steps (libfaketime), as NTP steps a real one |
//! | [`python`] | the Python tools of tests (mrjob, schemathesis, kubernetes-validate) from `scripts/python-env.sh` |
//!
//! The seeded generator of tests is the project's one, [`SeededRng`], re-exported here.
#![warn(missing_docs)]

pub mod cli;
pub mod clock;
pub mod cluster;
pub mod compose;
pub mod deadline;
pub mod docker;
pub mod etcd_cluster;
pub mod ha;
pub mod http;
pub mod oracle;
pub mod process;
pub mod proxy;
pub mod python;
pub mod server;
pub mod tmpfs;

pub use essaim_core::rng::{SeededRng, mix};
