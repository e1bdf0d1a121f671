//! Micro-batching: requests of one model version are queued and scored together.
//!
//! Why: a batch pays the hand-off to a blocking thread once, and under load the model
//! scores many rows per wake-up instead of one. The policy is Triton's dynamic batcher:
//! up to `scorers` batches are scored at once (its model instances, by default one per
//! core); once a scorer is free, the batcher takes the first waiting request, then keeps
//! taking requests until it holds `max_batch` of them or `max_delay` has passed since
//! the first. With the default delay of zero, a request that finds a scorer free is
//! scored at once, and batches form by themselves under load: while every scorer is
//! busy, requests gather in the queue and the next free scorer takes them together.
//! A delay only pays where a batch costs much less than its rows one by one (a GPU);
//! for a model scored row by row on a CPU it is added latency (bench/model_serve.sh).
//!
//! Memory is bounded: a request is admitted only with one of `max_queue` permits, held
//! until its answer is sent, so requests waiting in the channel, in the batch being
//! formed and in the batch being scored never exceed `max_queue`; without a permit the
//! caller gets [`Admission::Full`] (HTTP 429) at once, never a wait.
//!
//! A batcher lives as long as someone can submit to it: it ends once every
//! [`Batcher`] handle is dropped and the requests already queued are answered. That is
//! what lets a hot reload swap versions without failing a request: requests that
//! reached the old version finish there.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// The prediction of one row: the position of its class and every class's probability.
pub type Prediction = (usize, Vec<f64>);

/// Scores rows; called on a blocking thread with a whole batch.
pub type ScoreFn = Arc<dyn Fn(&[String]) -> Vec<Prediction> + Send + Sync>;

/// Default most requests per batch.
pub const DEFAULT_MAX_BATCH: usize = 32;
/// Default longest wait for a batch to fill, counted from its first request: none, as
/// Triton's default (see the module's documentation).
pub const DEFAULT_MAX_BATCH_DELAY: Duration = Duration::ZERO;
/// Default most requests admitted per version (queued, batched or being scored).
pub const DEFAULT_MAX_QUEUE: usize = 1024;

/// How batches are formed and how much may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most requests per batch (at least 1).
    pub max_batch: usize,
    /// Longest wait for a batch to fill, from its first request.
    pub max_delay: Duration,
    /// Most requests admitted at once (at least 1).
    pub max_queue: usize,
    /// Most batches scored at once, each on its own blocking thread (at least 1).
    pub scorers: usize,
}

/// Default most batches scored at once: one per core.
pub fn default_scorers() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get())
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_delay: DEFAULT_MAX_BATCH_DELAY,
            max_queue: DEFAULT_MAX_QUEUE,
            scorers: default_scorers(),
        }
    }
}

/// What the batcher reports of each batch (metrics, in the runner).
pub trait BatchObserver: Send + Sync + 'static {
    /// A batch of `requests` requests and `rows` rows was scored.
    fn batch_scored(&self, requests: usize, rows: usize);
    /// A request was admitted.
    fn admitted(&self);
    /// An admitted request left (answered, or failed).
    fn left(&self);
}

/// A request waiting for its batch.
struct Queued {
    texts: Vec<String>,
    reply_tx: oneshot::Sender<Vec<Prediction>>,
    /// Dropped with the request, after its answer is sent: frees its place.
    _permit: OwnedSemaphorePermit,
}

/// The submitting side of one version's batcher.
pub struct Batcher {
    queue_tx: mpsc::Sender<Queued>,
    permits: Arc<Semaphore>,
    observer: Arc<dyn BatchObserver>,
}

/// The result of [`Batcher::submit`].
pub enum Admission {
    /// Admitted: the answer will come on this receiver (closed if scoring failed).
    Queued(oneshot::Receiver<Vec<Prediction>>),
    /// Every place is taken.
    Full,
}

impl Batcher {
    /// Starts the batcher task of `score` on `tracker`.
    pub fn start(
        score: ScoreFn,
        limits: BatchLimits,
        observer: Arc<dyn BatchObserver>,
        tracker: &TaskTracker,
    ) -> Self {
        let max_queue = limits.max_queue.max(1);
        // As many channel places as permits: a permit holder's send never waits.
        let (queue_tx, queue_rx) = mpsc::channel(max_queue);
        tracker.spawn(run_batches(
            queue_rx,
            score,
            limits,
            observer.clone(),
            tracker.clone(),
        ));
        Self {
            queue_tx,
            permits: Arc::new(Semaphore::new(max_queue)),
            observer,
        }
    }

    /// Admits `texts` if a place is free; never waits.
    pub fn submit(&self, texts: Vec<String>) -> Admission {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Admission::Full;
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let queued = Queued {
            texts,
            reply_tx,
            _permit: permit,
        };
        // Cannot be full (one place per permit) nor closed (the receiver lives until
        // every Batcher is dropped, and `self` is one).
        if self.queue_tx.try_send(queued).is_err() {
            return Admission::Full;
        }
        self.observer.admitted();
        Admission::Queued(reply_rx)
    }
}

/// Forms batches until every sender is dropped and the queue is empty, each once a
/// scorer is free, and scores each on `tracker` (so that whoever waits for the tracker
/// waits for the last answer).
async fn run_batches(
    mut queue_rx: mpsc::Receiver<Queued>,
    score: ScoreFn,
    limits: BatchLimits,
    observer: Arc<dyn BatchObserver>,
    tracker: TaskTracker,
) {
    let scorers = Arc::new(Semaphore::new(limits.scorers.max(1)));
    loop {
        let scorer = scorers
            .clone()
            .acquire_owned()
            .await
            .expect("the scorers' semaphore is never closed");
        let Some(batch) = next_batch(&mut queue_rx, limits).await else {
            return;
        };
        let (score, observer) = (score.clone(), observer.clone());
        tracker.spawn(async move {
            score_and_answer(batch, score, observer.as_ref()).await;
            drop(scorer);
        });
    }
}

/// Scores one batch on a blocking thread and sends each request its own rows.
async fn score_and_answer(batch: Vec<Queued>, score: ScoreFn, observer: &dyn BatchObserver) {
    let rows: Vec<usize> = batch.iter().map(|queued| queued.texts.len()).collect();
    let (texts, replies): (Vec<Vec<String>>, Vec<_>) = batch
        .into_iter()
        .map(|queued| (queued.texts, (queued.reply_tx, queued._permit)))
        .unzip();
    let texts: Vec<String> = texts.into_iter().flatten().collect();
    let total_rows = texts.len();
    // Scoring a batch can take more than the 0.5 ms an async task may block.
    let scored = tokio::task::spawn_blocking(move || score(&texts)).await;
    observer.batch_scored(rows.len(), total_rows);
    let Ok(predictions) = scored else {
        tracing::error!(
            rows = total_rows,
            "scoring a batch panicked; its requests fail"
        );
        for _ in &replies {
            observer.left();
        }
        return; // The replies are dropped: each caller sees a closed channel.
    };
    // Handed back in request order: each request takes its rows off the front.
    let mut rest = predictions;
    for ((reply_tx, permit), count) in replies.into_iter().zip(rows) {
        let tail = rest.split_off(count.min(rest.len()));
        let _caller_gone = reply_tx.send(std::mem::replace(&mut rest, tail));
        drop(permit);
        observer.left();
    }
}

/// Waits for a first request, then takes more until the batch holds `max_batch` or
/// `max_delay` has passed since the first arrived; `None` once the queue is closed
/// and empty.
async fn next_batch(
    queue_rx: &mut mpsc::Receiver<Queued>,
    limits: BatchLimits,
) -> Option<Vec<Queued>> {
    let first = queue_rx.recv().await?;
    let filled_by = Instant::now() + limits.max_delay;
    let mut batch = vec![first];
    while batch.len() < limits.max_batch.max(1) {
        // What is already queued is taken without touching the timer.
        match queue_rx.try_recv() {
            Ok(queued) => {
                batch.push(queued);
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        // A timer whose deadline has passed still fires only on the timer's next tick
        // (up to a millisecond): a batch that may not wait does not touch it.
        if Instant::now() >= filled_by {
            break;
        }
        match tokio::time::timeout_at(filled_by, queue_rx.recv()).await {
            Ok(Some(queued)) => batch.push(queued),
            Ok(None) | Err(_) => break,
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Recorded {
        batches: Mutex<Vec<(usize, usize)>>,
        inside: AtomicUsize,
    }

    impl BatchObserver for Recorded {
        fn batch_scored(&self, requests: usize, rows: usize) {
            self.batches.lock().unwrap().push((requests, rows));
        }
        fn admitted(&self) {
            self.inside.fetch_add(1, Ordering::SeqCst);
        }
        fn left(&self) {
            self.inside.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Predicts class = text length, probability 1.
    fn by_length() -> ScoreFn {
        Arc::new(|texts: &[String]| texts.iter().map(|t| (t.len(), vec![1.0])).collect())
    }

    fn texts(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn admitted(admission: Admission) -> oneshot::Receiver<Vec<Prediction>> {
        match admission {
            Admission::Queued(reply_rx) => reply_rx,
            Admission::Full => panic!("refused while places were free"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_within_the_delay_share_a_batch_and_get_their_own_rows() {
        let observer = Arc::new(Recorded::default());
        let limits = BatchLimits {
            max_batch: 8,
            max_delay: Duration::from_millis(5),
            max_queue: 16,
            scorers: 1,
        };
        let tracker = TaskTracker::new();
        let batcher = Batcher::start(by_length(), limits, observer.clone(), &tracker);
        let first = admitted(batcher.submit(texts(&["a", "bb"])));
        tokio::time::sleep(Duration::from_millis(3)).await;
        let second = admitted(batcher.submit(texts(&["ccc"])));
        assert_eq!(first.await.unwrap(), [(1, vec![1.0]), (2, vec![1.0])]);
        assert_eq!(second.await.unwrap(), [(3, vec![1.0])]);
        assert_eq!(*observer.batches.lock().unwrap(), [(2, 3)]);
        // Past the delay, a request starts a batch of its own.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let third = admitted(batcher.submit(texts(&["dddd"])));
        assert_eq!(third.await.unwrap(), [(4, vec![1.0])]);
        assert_eq!(*observer.batches.lock().unwrap(), [(2, 3), (1, 1)]);
        drop(batcher);
        tracker.close();
        tracker.wait().await;
        assert_eq!(observer.inside.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_leaves_without_waiting_for_the_delay() {
        let observer = Arc::new(Recorded::default());
        let limits = BatchLimits {
            max_batch: 2,
            max_delay: Duration::from_secs(3600),
            max_queue: 16,
            scorers: 1,
        };
        let tracker = TaskTracker::new();
        let batcher = Batcher::start(by_length(), limits, observer.clone(), &tracker);
        let started = Instant::now();
        let replies: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|word| admitted(batcher.submit(texts(&[word]))))
            .collect();
        let mut replies = replies.into_iter();
        replies.next().unwrap().await.unwrap();
        replies.next().unwrap().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the full batch waited"
        );
        assert_eq!(*observer.batches.lock().unwrap(), [(2, 2)]);
        // The third waits for company until the delay, then goes alone.
        replies.next().unwrap().await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_at_once_and_frees_places_as_answers_leave() {
        let observer = Arc::new(Recorded::default());
        let limits = BatchLimits {
            max_batch: 100,
            max_delay: Duration::from_secs(10),
            max_queue: 2,
            scorers: 1,
        };
        let tracker = TaskTracker::new();
        let batcher = Batcher::start(by_length(), limits, observer.clone(), &tracker);
        let one = admitted(batcher.submit(texts(&["a"])));
        let two = admitted(batcher.submit(texts(&["b"])));
        assert!(matches!(batcher.submit(texts(&["c"])), Admission::Full));
        assert_eq!(observer.inside.load(Ordering::SeqCst), 2);
        one.await.unwrap();
        two.await.unwrap();
        let three = admitted(batcher.submit(texts(&["c"])));
        three.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn queued_requests_are_answered_after_the_last_handle_is_dropped() {
        let observer = Arc::new(Recorded::default());
        let limits = BatchLimits {
            max_batch: 4,
            max_delay: Duration::from_millis(50),
            max_queue: 8,
            scorers: 1,
        };
        let tracker = TaskTracker::new();
        let batcher = Batcher::start(by_length(), limits, observer.clone(), &tracker);
        let reply = admitted(batcher.submit(texts(&["kept"])));
        drop(batcher); // a reload swapped this version out
        assert_eq!(reply.await.unwrap(), [(4, vec![1.0])]);
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_scorer_fails_its_batch_and_the_batcher_goes_on() {
        let observer = Arc::new(Recorded::default());
        let score: ScoreFn = Arc::new(|texts: &[String]| {
            assert!(texts[0] != "boom", "scorer bug");
            texts.iter().map(|t| (t.len(), vec![])).collect()
        });
        let limits = BatchLimits {
            max_batch: 1,
            max_delay: Duration::ZERO,
            max_queue: 8,
            scorers: 1,
        };
        let tracker = TaskTracker::new();
        let batcher = Batcher::start(score, limits, observer.clone(), &tracker);
        let failed = admitted(batcher.submit(texts(&["boom"])));
        assert!(failed.await.is_err());
        let fine = admitted(batcher.submit(texts(&["ok"])));
        assert_eq!(fine.await.unwrap(), [(2, vec![])]);
        assert_eq!(observer.inside.load(Ordering::SeqCst), 0);
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_delay_requests_gather_while_every_scorer_is_busy() {
        let observer = Arc::new(Recorded::default());
        let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (entered_tx, go_rx) = (Mutex::new(entered_tx), Mutex::new(go_rx));
        let score: ScoreFn = Arc::new(move |texts: &[String]| {
            if texts[0] == "first" {
                entered_tx.lock().unwrap().send(()).unwrap();
                go_rx.lock().unwrap().recv().unwrap();
            }
            texts.iter().map(|t| (t.len(), vec![])).collect()
        });
        let limits = BatchLimits {
            max_batch: 8,
            max_delay: Duration::ZERO,
            max_queue: 16,
            scorers: 1,
        };
        let tracker = TaskTracker::new();
        let batcher = Batcher::start(score, limits, observer.clone(), &tracker);
        let first = admitted(batcher.submit(texts(&["first"])));
        tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
            .await
            .unwrap();
        let later: Vec<_> = ["b", "cc", "ddd"]
            .iter()
            .map(|word| admitted(batcher.submit(texts(&[word]))))
            .collect();
        go_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap(), [(5, vec![])]);
        for (reply, length) in later.into_iter().zip([1, 2, 3]) {
            assert_eq!(reply.await.unwrap(), [(length, vec![])]);
        }
        // The first went alone at once; the three that waited for the scorer, together.
        assert_eq!(*observer.batches.lock().unwrap(), [(1, 1), (3, 3)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_scored_side_by_side_up_to_the_scorers() {
        let observer = Arc::new(Recorded::default());
        // Each batch waits for the other: only two scorers at once can finish.
        let both = Arc::new(std::sync::Barrier::new(2));
        let score: ScoreFn = Arc::new(move |texts: &[String]| {
            both.wait();
            texts.iter().map(|t| (t.len(), vec![])).collect()
        });
        let limits = BatchLimits {
            max_batch: 1,
            max_delay: Duration::ZERO,
            max_queue: 16,
            scorers: 2,
        };
        let tracker = TaskTracker::new();
        let batcher = Batcher::start(score, limits, observer.clone(), &tracker);
        let one = admitted(batcher.submit(texts(&["a"])));
        let two = admitted(batcher.submit(texts(&["bb"])));
        let answers = tokio::time::timeout(Duration::from_secs(30), async {
            (one.await.unwrap(), two.await.unwrap())
        })
        .await
        .expect("two batches were not scored at once");
        assert_eq!(answers, (vec![(1, vec![])], vec![(2, vec![])]));
    }
}
