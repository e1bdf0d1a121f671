//! [`Txn`]: an etcd transaction (`If compares Then ops Else ops`) with the guards that
//! fencing needs, and the accounting that keeps it within etcd's limits.
//!
//! etcd refuses a transaction with more than `--max-txn-ops` operations (128 by
//! default) or a request over `--max-request-bytes` (1.5 MiB by default); callers split
//! their writes with [`Txn::op_count`] and [`Txn::byte_size`].

use crate::KeyValue;
use crate::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseOp, TxnRequest,
    compare, request_op, response_op,
};

/// A transaction being built.
#[derive(Debug, Default, Clone)]
pub struct Txn {
    compares: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
    bytes: usize,
}

/// What a transaction did.
#[derive(Debug, Clone)]
pub struct TxnOutcome {
    /// True when every compare held and the success branch ran.
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// The responses of the branch that ran, in order.
    pub responses: Vec<ResponseOp>,
}

impl TxnOutcome {
    /// The key-values read by the `index`-th operation of the branch that ran (empty
    /// when it was not a read).
    pub fn read(&self, index: usize) -> &[KeyValue] {
        match self.responses.get(index).and_then(|r| r.response.as_ref()) {
            Some(response_op::Response::ResponseRange(range)) => &range.kvs,
            _ => &[],
        }
    }
}

/// The first key after every key that starts with `prefix` (etcd's `range_end`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the key space.
    vec![0]
}

impl Txn {
    /// An empty transaction (no guard: it always succeeds).
    pub fn new() -> Self {
        Self::default()
    }

    fn guard(
        mut self,
        key: &[u8],
        target: compare::CompareTarget,
        union: compare::TargetUnion,
    ) -> Self {
        self.bytes += key.len() + 16;
        self.compares.push(Compare {
            result: compare::CompareResult::Equal as i32,
            target: target as i32,
            key: key.to_vec(),
            range_end: Vec::new(),
            target_union: Some(union),
        });
        self
    }

    /// Guard: `key` exists and was created at `revision` — it is still the same
    /// incarnation of the key (a leader key re-created by another leader has a newer one).
    pub fn when_created_at(self, key: &[u8], revision: i64) -> Self {
        self.guard(
            key,
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(revision),
        )
    }

    /// Guard: `key` does not exist.
    pub fn when_absent(self, key: &[u8]) -> Self {
        self.when_created_at(key, 0)
    }

    /// Guard: `key` was last modified at `revision` (0: it does not exist).
    pub fn when_modified_at(self, key: &[u8], revision: i64) -> Self {
        self.guard(
            key,
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(revision),
        )
    }

    fn then(mut self, request: request_op::Request, bytes: usize) -> Self {
        self.bytes += bytes + 16;
        self.success.push(RequestOp {
            request: Some(request),
        });
        self
    }

    /// Writes `value` at `key`, attached to `lease` (0: none) when the guards hold.
    pub fn put(self, key: &[u8], value: Vec<u8>, lease: i64) -> Self {
        let bytes = key.len() + value.len();
        self.then(
            request_op::Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value,
                lease,
                ..PutRequest::default()
            }),
            bytes,
        )
    }

    /// Deletes every key in `[from, to)` when the guards hold.
    pub fn delete_range(self, from: &[u8], to: &[u8]) -> Self {
        let bytes = from.len() + to.len();
        self.then(
            request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: from.to_vec(),
                range_end: to.to_vec(),
                ..DeleteRangeRequest::default()
            }),
            bytes,
        )
    }

    /// Deletes `key` when the guards hold.
    pub fn delete(self, key: &[u8]) -> Self {
        self.delete_range(key, &[])
    }

    /// Deletes every key that starts with `prefix` when the guards hold.
    pub fn delete_prefix(self, prefix: &[u8]) -> Self {
        let end = prefix_end(prefix);
        self.delete_range(prefix, &end)
    }

    /// Reads `key` when the guards hold (see [`TxnOutcome::read`]).
    pub fn get(self, key: &[u8]) -> Self {
        let bytes = key.len();
        self.then(request_op::Request::RequestRange(range(key)), bytes)
    }

    /// Reads `key` when a guard fails (see [`TxnOutcome::read`]): who holds it instead.
    pub fn or_get(mut self, key: &[u8]) -> Self {
        self.bytes += key.len() + 16;
        self.failure.push(RequestOp {
            request: Some(request_op::Request::RequestRange(range(key))),
        });
        self
    }

    /// The number of operations, as etcd counts them against `--max-txn-ops`.
    pub fn op_count(&self) -> usize {
        self.success.len().max(self.failure.len())
    }

    /// An upper bound of the request's encoded size, for `--max-request-bytes`.
    pub fn byte_size(&self) -> usize {
        self.bytes
    }

    pub(crate) fn into_request(self) -> TxnRequest {
        TxnRequest {
            compare: self.compares,
            success: self.success,
            failure: self.failure,
        }
    }
}

fn range(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        ..RangeRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/essaim/a/"), b"/essaim/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn operations_and_bytes_are_counted() {
        let txn = Txn::new()
            .when_absent(b"k")
            .put(b"k", vec![0; 100], 0)
            .delete_prefix(b"p/")
            .or_get(b"k");
        assert_eq!(txn.op_count(), 2);
        assert!(txn.byte_size() >= 100 + 1 + 2);
    }
}
