//! Coordinator high availability on etcd: the election of one leader among the
//! coordinators of a cluster, and a journal that lives in etcd, so that losing any one
//! machine — the leader's included — loses nothing acknowledged.
//!
//! Why etcd holds the journal (rather than a leader's disk replicated by hand): etcd is
//! already the consensus service the election needs, replicates every write to a
//! quorum before answering, and its transactions let the journal's writes be *fenced*:
//! each one applies only while its writer's leader key still exists with the create
//! revision it was elected with. A deposed leader cannot commit anything, whatever it
//! believes. The price is etcd's limits (requests of 1.5 MiB, a database quota), which
//! the journal respects by cutting large writes, compacting its log into snapshots and
//! compacting etcd's history.
//!
//! | module | concept |
//! |---|---|
//! | [`layout`] | the keys of one cluster, under `/essaim/<cluster>/` |
//! | [`leadership`] | [`Leadership`]: campaign, the fence, losing and resigning |
//! | `fenced` | writes guarded by the fence, cut to etcd's limits |
//! | [`journal`] | [`EtcdJournal`], the `Journal` in etcd |
//! | [`follower`] | [`JournalFollower`]: a standby's copy of the journal, kept up to date |
//! | `recovery` | reading the journal back; cleaning up after an interrupted write |
//! | [`results`] | [`EtcdResults`], committed results read from etcd |
#![warn(missing_docs)]

mod fenced;
pub mod follower;
pub mod journal;
pub mod layout;
pub mod leadership;
mod recovery;
pub mod results;

pub use follower::{JournalFollower, leader_position};
pub use journal::EtcdJournal;
pub use layout::{InvalidClusterName, Layout};
pub use leadership::{Fence, Leader, Leadership};
pub use results::EtcdResults;
