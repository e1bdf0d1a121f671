//! A circuit breaker shared by every call to one endpoint, and connectors wrapped in it.
//!
//! The [`CircuitBreaker`] is pure; this module gives it a clock and an owner. A
//! [`SharedBreaker`] is a handle on one breaker: the units of a pipeline that reach the
//! same server (say, every NATS source partition of one pipeline on one worker) share
//! it, so that once the server is known to be down, none of them spends a timeout to
//! find out again. [`Guarded`] wraps any [`PartitionReader`] so that each of its calls
//! asks the breaker first and reports its outcome after, and any [`MessageWriter`] so
//! that a write and its flush are one such call ([`Guarded::deliver`]);
//! [`SharedBreaker::call`] does the same for any one call (opening a reader, say).
//!
//! Which outcome counts: a success closes the breaker; a transient failure counts
//! towards opening it; a permanent failure (a bad topic, a row that does not fit) says
//! nothing about the server's health and leaves the breaker as it is. A refused call
//! fails with [`ConnectorError::breaker_open`], which carries the time left before the
//! next probe, so a caller can wait exactly that long.
//!
//! Each change of state is handed to a [`BreakerObserver`] (the runtime's metrics),
//! under the breaker's lock so that the observer sees the states in their order. The
//! lock is never held across an `.await`.
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use crate::{ConnectorError, MessageWriter, OutMessage, PartitionReader, SourceMessage};

/// Told of every state a breaker takes (to export it as a metric).
pub trait BreakerObserver: Send + Sync + fmt::Debug {
    /// Called when the breaker's level (closed, half-open, open) changes, with its new
    /// `state`; `opened` is true when it has just opened.
    fn observe(&self, state: BreakerState, opened: bool);
}

/// A handle on one circuit breaker (see the module doc); clones share it.
#[derive(Clone)]
pub struct SharedBreaker {
    connector: &'static str,
    breaker: Arc<Mutex<CircuitBreaker>>,
    observer: Option<Arc<dyn BreakerObserver>>,
}

impl fmt::Debug for SharedBreaker {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SharedBreaker")
            .field("connector", &self.connector)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl SharedBreaker {
    /// Returns a closed breaker for `connector` (`nats`, `kafka`, `files`, `postgres`),
    /// whose states nobody observes.
    pub fn new(connector: &'static str, config: BreakerConfig) -> SharedBreaker {
        SharedBreaker {
            connector,
            breaker: Arc::new(Mutex::new(CircuitBreaker::new(config))),
            observer: None,
        }
    }

    /// Returns a closed breaker whose states `observer` is told of.
    pub fn observed(
        connector: &'static str,
        config: BreakerConfig,
        observer: Arc<dyn BreakerObserver>,
    ) -> SharedBreaker {
        observer.observe(
            BreakerState::Closed {
                consecutive_failures: 0,
            },
            false,
        );
        SharedBreaker {
            observer: Some(observer),
            ..SharedBreaker::new(connector, config)
        }
    }

    /// Returns the connector this breaker guards.
    pub fn connector(&self) -> &'static str {
        self.connector
    }

    /// Returns the breaker's current state.
    pub fn state(&self) -> BreakerState {
        self.lock().state()
    }

    /// Returns `Ok` when a call may go now, else the time until the next probe.
    pub fn try_allow(&self) -> Result<(), Duration> {
        self.update(|breaker| breaker.allow(Instant::now()))
    }

    /// Like [`Self::try_allow`], with the refusal as the connector error of `action`.
    pub fn allow(&self, action: &'static str) -> Result<(), ConnectorError> {
        self.try_allow()
            .map_err(|retry_in| ConnectorError::breaker_open(self.connector, action, retry_in))
    }

    /// Records a successful call: the breaker closes.
    pub fn on_success(&self) {
        self.update(CircuitBreaker::on_success);
    }

    /// Records a failed call that a retry may fix.
    pub fn on_failure(&self) {
        self.update(|breaker| breaker.on_failure(Instant::now()));
    }

    /// Records the outcome of a call: a success, a transient failure (as `is_transient`
    /// tells), or a permanent one, which changes nothing.
    pub fn record<T, E>(&self, result: &Result<T, E>, is_transient: impl FnOnce(&E) -> bool) {
        match result {
            Ok(_) => self.on_success(),
            Err(error) if is_transient(error) => self.on_failure(),
            Err(_) => {}
        }
    }

    /// Runs `call` (named `action` in errors) unless the breaker is open, and records
    /// its outcome.
    pub async fn call<T>(
        &self,
        action: &'static str,
        call: impl Future<Output = Result<T, ConnectorError>>,
    ) -> Result<T, ConnectorError> {
        self.allow(action)?;
        let result = call.await;
        self.record(&result, |error| error.transient);
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        // The breaker's methods cannot panic half-way: a poisoned lock holds a valid state.
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` and tells the observer the state it led to.
    fn update<T>(&self, change: impl FnOnce(&mut CircuitBreaker) -> T) -> T {
        let mut breaker = self.lock();
        let before = breaker.state().level();
        let outcome = change(&mut breaker);
        let after = breaker.state();
        // Only changes of level are told: a gauge shows nothing finer.
        if let Some(observer) = &self.observer
            && before != after.level()
        {
            let opened = matches!(after, BreakerState::Open { .. });
            observer.observe(after, opened);
        }
        outcome
    }
}

/// A reader or writer whose every call goes through a [`SharedBreaker`].
pub struct Guarded<T> {
    inner: T,
    breaker: SharedBreaker,
}

impl<T> Guarded<T> {
    /// Wraps `inner` in `breaker`.
    pub fn new(inner: T, breaker: SharedBreaker) -> Guarded<T> {
        Guarded { inner, breaker }
    }

    /// Returns the wrapped reader or writer, for what the traits do not cover.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Returns the breaker.
    pub fn breaker(&self) -> &SharedBreaker {
        &self.breaker
    }
}

impl<R: PartitionReader> PartitionReader for Guarded<R> {
    async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<SourceMessage>, ConnectorError> {
        self.breaker
            .call("fetch", self.inner.fetch(max, wait))
            .await
    }

    async fn commit(&mut self, position: u64) -> Result<(), ConnectorError> {
        self.breaker
            .call("commit", self.inner.commit(position))
            .await
    }

    async fn lag(&mut self) -> Result<Option<u64>, ConnectorError> {
        self.breaker.call("lag", self.inner.lag()).await
    }
}

impl<W: MessageWriter> Guarded<W> {
    /// Writes `messages` and flushes them, as **one** call to the breaker: a write may
    /// only queue (a Kafka producer, a buffered file), so whether the destination is up
    /// is known at the flush. Counting the write alone would let a half-open breaker's
    /// probe succeed on a queue while the destination is still down.
    pub async fn deliver(&mut self, messages: &[OutMessage]) -> Result<(), ConnectorError> {
        let inner = &mut self.inner;
        let delivery = async move {
            inner.write(messages).await?;
            inner.flush().await
        };
        self.breaker.call("write", delivery).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose destination is down for its first `down_for` calls, then up;
    /// `refused` marks a call it answers with a permanent error.
    struct FlakyWriter {
        calls: u32,
        down_for: u32,
        refused: bool,
    }

    impl MessageWriter for FlakyWriter {
        async fn write(&mut self, _messages: &[OutMessage]) -> Result<(), ConnectorError> {
            self.calls += 1;
            if self.refused {
                return Err(ConnectorError::permanent("test", "write", "bad message"));
            }
            if self.calls <= self.down_for {
                return Err(ConnectorError::transient("test", "write", "unreachable"));
            }
            Ok(())
        }

        async fn flush(&mut self) -> Result<(), ConnectorError> {
            Ok(())
        }
    }

    #[derive(Debug, Default)]
    struct Seen(Mutex<Vec<(i64, bool)>>);

    impl BreakerObserver for Seen {
        fn observe(&self, state: BreakerState, opened: bool) {
            self.0
                .lock()
                .expect("test lock")
                .push((state.level(), opened));
        }
    }

    fn config(cool_down: Duration) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 2,
            cool_down,
        }
    }

    #[tokio::test]
    async fn an_open_breaker_refuses_without_calling_and_says_when_to_come_back() {
        let seen = Arc::new(Seen::default());
        let breaker =
            SharedBreaker::observed("test", config(Duration::from_secs(60)), seen.clone());
        let flaky = FlakyWriter {
            calls: 0,
            down_for: u32::MAX,
            refused: false,
        };
        let mut writer = Guarded::new(flaky, breaker.clone());
        for _ in 0..2 {
            let error = writer
                .deliver(&[])
                .await
                .expect_err("the destination is down");
            assert_eq!(error.retry_in, None, "a real failure: {error}");
        }
        let refused = writer.deliver(&[]).await.expect_err("the breaker is open");
        assert!(refused.transient);
        assert!(
            refused
                .retry_in
                .is_some_and(|left| left > Duration::from_secs(50)),
            "{refused:?}"
        );
        assert_eq!(
            writer.inner().calls,
            2,
            "the refused call never reached the writer"
        );
        // A refused call on another handle of the same breaker.
        let other = breaker.call("open", async { Ok(()) }).await;
        assert!(other.is_err_and(|error| error.retry_in.is_some()));
        assert_eq!(*seen.0.lock().expect("test lock"), [(0, false), (2, true)]);
    }

    #[tokio::test]
    async fn the_probe_after_the_cool_down_closes_the_breaker() {
        let seen = Arc::new(Seen::default());
        let breaker = SharedBreaker::observed("test", config(Duration::ZERO), seen.clone());
        let flaky = FlakyWriter {
            calls: 0,
            down_for: 2,
            refused: false,
        };
        let mut writer = Guarded::new(flaky, breaker.clone());
        assert!(writer.deliver(&[]).await.is_err());
        assert!(writer.deliver(&[]).await.is_err());
        assert_eq!(breaker.state().level(), 2);
        writer.deliver(&[]).await.expect("the probe succeeds");
        assert_eq!(breaker.state().level(), 0);
        assert_eq!(
            *seen.0.lock().expect("test lock"),
            [(0, false), (2, true), (1, false), (0, false)]
        );
    }

    #[tokio::test]
    async fn permanent_failures_do_not_open_the_breaker() {
        let breaker = SharedBreaker::new("test", config(Duration::from_secs(60)));
        let flaky = FlakyWriter {
            calls: 0,
            down_for: 0,
            refused: true,
        };
        let mut writer = Guarded::new(flaky, breaker.clone());
        for _ in 0..5 {
            let error = writer.deliver(&[]).await.expect_err("refused");
            assert!(!error.transient);
        }
        assert_eq!(breaker.state().level(), 0);
        assert_eq!(writer.inner().calls, 5);
    }
}
