//! The queue and the table as a choreography calls them: two small async traits, shaped on the
//! AWS APIs (`ReceiveMessage`, `PutItem` with a condition…), so that a design written against
//! them runs unchanged on another implementation. [`SimQueue`] and [`SimTable`] are the
//! in-process, virtual-time ones, over the pure models of [`super::sqs`] and [`super::dynamo`];
//! an implementation over the real services (the AWS SDK, or moto) is a later step.
//!
//! What the traits leave out is what the real APIs lack: no listing of a queue's bodies, no
//! news of a message moved to the dead-letter queue except by receiving from that queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sim::RunContext;
use tokio::sync::Notify;

use super::dynamo::{Attr, Capacity, DynamoError, Item, Key, Table};
use super::sqs::{MAX_WAIT, Queue, QueueConfig, Received};

/// The time a simulated service reads: a run's clock ([`RunContext`], virtual or live), or a
/// test's.
pub trait Clock: Send + Sync + 'static {
    /// Time since the run started.
    fn now(&self) -> Duration;
    /// Sleeps for `d` of that time.
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()>;
}

impl Clock for RunContext {
    fn now(&self) -> Duration {
        RunContext::now(self)
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        Box::pin(RunContext::sleep(self, d))
    }
}

/// Why a service call did nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// DynamoDB's `ConditionalCheckFailedException`: the condition did not hold.
    #[error("the condition did not hold")]
    ConditionFailed,
    /// DynamoDB's `ProvisionedThroughputExceededException` (or SQS's throttling): worth retrying
    /// after `retry_after`.
    #[error("throttled, retry after {retry_after:?}")]
    Throttled {
        /// When the capacity would be there.
        retry_after: Duration,
    },
}

impl From<DynamoError> for ServiceError {
    fn from(e: DynamoError) -> Self {
        match e {
            DynamoError::ConditionalCheckFailed => Self::ConditionFailed,
            DynamoError::ProvisionedThroughputExceeded { retry_after } => Self::Throttled { retry_after },
        }
    }
}

/// A service call's answer, to be awaited: ready at once where the service answered without
/// waiting (no allocation), or a boxed future where it waits (a long poll, a throttled retry).
/// A choreography makes about nine calls per LLM call; boxing every answer was a tenth of its
/// time.
pub enum Call<'a, T> {
    /// Answered (taken by the first poll).
    Ready(Option<Result<T, ServiceError>>),
    /// Still waiting.
    Waiting(BoxFuture<'a, Result<T, ServiceError>>),
}

impl<'a, T> Call<'a, T> {
    /// An answer given at once.
    pub fn ready(r: Result<T, ServiceError>) -> Self {
        Self::Ready(Some(r))
    }

    /// An answer that comes when `f` ends.
    pub fn waiting(f: impl Future<Output = Result<T, ServiceError>> + Send + 'a) -> Self {
        Self::Waiting(Box::pin(f))
    }

    /// Whether the answer is here already: awaiting it does not suspend the caller, so no time
    /// passes (in virtual time) before the caller goes on.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready(_))
    }

    /// Whether this is an answer given at once that is not a throttling (a retry has nothing
    /// to do with it).
    fn settled(&self) -> bool {
        matches!(self, Self::Ready(Some(r)) if !matches!(r, Err(ServiceError::Throttled { .. })))
    }
}

// Nothing inside is pinned in place: the ready answer is moved out, the waiting future is boxed.
impl<T> Unpin for Call<'_, T> {}

impl<T> Future for Call<'_, T> {
    type Output = Result<T, ServiceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(r) => Poll::Ready(r.take().expect("a call is not awaited again after it answered")),
            Self::Waiting(f) => f.as_mut().poll(cx),
        }
    }
}

/// A message's handle for delete and visibility changes (SQS's receipt handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    /// The message.
    pub id: u64,
    /// The delivery.
    pub receipt: u64,
}

impl<T> From<&Received<T>> for Handle {
    fn from(r: &Received<T>) -> Self {
        Self {
            id: r.id,
            receipt: r.receipt,
        }
    }
}

/// `GetQueueAttributes` (and CloudWatch's `ApproximateAgeOfOldestMessage`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueAttributes {
    /// `ApproximateNumberOfMessages` + `…NotVisible` + `…Delayed`: every message in the queue.
    pub messages: u64,
    /// Age of the oldest message.
    pub oldest_age: Option<Duration>,
}

/// An SQS queue, as a consumer and a producer call it.
pub trait MessageQueue<T>: Send + Sync {
    /// `SendMessage`, with `DelaySeconds` (the queue's default when `None`).
    fn send(&self, body: T, delay: Option<Duration>) -> Call<'_, ()>;
    /// `ReceiveMessage` with `MaxNumberOfMessages = max` (1–10) and `WaitTimeSeconds = wait`
    /// (at most 20 s): returns as soon as a message is there, or empty when the wait ends.
    fn receive(&self, max: usize, wait: Duration) -> Call<'_, Vec<Received<T>>>;
    /// `DeleteMessage`: false when the handle is no longer the message's latest delivery.
    fn delete(&self, handle: Handle) -> Call<'_, bool>;
    /// `ChangeMessageVisibility`: visible again `timeout` from now; false when the handle is stale.
    fn change_visibility(&self, handle: Handle, timeout: Duration) -> Call<'_, bool>;
    /// `GetQueueAttributes`.
    fn attributes(&self) -> Call<'_, QueueAttributes>;
}

/// The condition of a [`KeyValueTable::put`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Condition {
    /// None: the put always writes.
    Always,
    /// `attribute_not_exists(pk)`: only a new item.
    Absent,
    /// `attribute_not_exists(pk) OR #attr < :value`: a new item, or one whose number `attr` is
    /// below `value` (an expired claim, say).
    AbsentOrBelow {
        /// The attribute compared.
        attr: &'static str,
        /// The bound.
        value: i64,
    },
}

/// A DynamoDB table keyed by a string (partition `PREFIX#…`), as the choreography calls it.
pub trait KeyValueTable: Send + Sync {
    /// `GetItem`.
    fn get<'a>(&'a self, key: Key) -> Call<'a, Option<Item>>;
    /// `PutItem` with a condition; a failed condition is [`ServiceError::ConditionFailed`].
    fn put<'a>(&'a self, key: Key, item: Item, condition: Condition) -> Call<'a, ()>;
    /// `UpdateItem … ADD attr n` with `ReturnValues: UPDATED_NEW`: the new value.
    fn add<'a>(&'a self, key: Key, attr: &'static str, n: i64) -> Call<'a, i64>;
    /// `UpdateItem … SET attr = value`, creating the item when absent.
    fn set<'a>(&'a self, key: Key, attr: &'static str, value: Attr) -> Call<'a, ()>;
    /// `DeleteItem`.
    fn delete<'a>(&'a self, key: Key) -> Call<'a, ()>;
    /// `DeleteItem` with `ConditionExpression: #attr = :value`: deletes the item only while its
    /// number `attr` is `value` (a claim still its holder's); else
    /// [`ServiceError::ConditionFailed`].
    fn delete_if<'a>(&'a self, key: Key, attr: &'static str, value: i64) -> Call<'a, ()>;
    /// `Query`: the items of the partition `name#id`, in sort-key order.
    fn query<'a>(&'a self, name: &'static str, id: u32) -> Call<'a, Vec<(Key, Item)>>;
    /// `Scan` with a filter on the key: every item whose partition key is named `name`, in key
    /// order.
    fn scan<'a>(&'a self, name: &'static str) -> Call<'a, Vec<(Key, Item)>>;
}

/// An SQS queue in virtual time: [`Queue`] behind a lock, read against the run's clock, with
/// long polling and, when it has a redrive policy, its dead-letter queue as another `SimQueue`.
pub struct SimQueue<T> {
    ctx: Arc<dyn Clock>,
    queue: Mutex<Queue<T>>,
    /// Woken by every send (a long poll returns at once).
    sent: Notify,
    /// Draws for at-least-once duplicates: one stream per queue.
    rng: Mutex<sim::rng::RunRng>,
    dead_letter: Option<Arc<SimQueue<T>>>,
}

impl<T: Clone + Send + Sync + 'static> SimQueue<T> {
    /// A queue on `clock`, drawing its at-least-once duplicates from `rng` (a run's
    /// `ctx.rng("sqs/NAME")`), moving messages past the redrive policy to `dead_letter`.
    pub fn new(
        clock: Arc<dyn Clock>,
        rng: sim::rng::RunRng,
        config: QueueConfig,
        dead_letter: Option<Arc<SimQueue<T>>>,
    ) -> Self {
        Self {
            ctx: clock,
            queue: Mutex::new(Queue::new(config)),
            sent: Notify::new(),
            rng: Mutex::new(rng),
            dead_letter,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        self.queue.lock().expect("no task panicked holding the queue")
    }

    /// The pure model, for tests and figures.
    pub fn with<R>(&self, f: impl FnOnce(&Queue<T>) -> R) -> R {
        f(&self.lock())
    }

    fn try_receive(&self, now: Duration, max: usize) -> Result<Vec<Received<T>>, Option<Duration>> {
        let (batch, dead) = {
            let mut q = self.lock();
            if !q.any_visible(now) {
                return Err(q.next_visible());
            }
            let mut rng = self.rng.lock().expect("no task panicked holding the generator");
            let (batch, _) = q.receive(now, max, || rng.next_f64());
            (batch, q.take_dead_letters())
        };
        // (Only when some went: a wake for nothing costs the watcher a poll and a new timer.)
        if let Some(dlq) = &self.dead_letter
            && !dead.is_empty()
        {
            let mut d = dlq.lock();
            for (_, body) in dead {
                d.send(now, body, Some(Duration::ZERO));
            }
            drop(d);
            dlq.sent.notify_waiters();
        }
        if batch.is_empty() {
            // Everything visible went to the dead-letter queue.
            return Err(self.lock().next_visible());
        }
        Ok(batch)
    }
}

impl<T: Clone + Send + Sync + 'static> MessageQueue<T> for SimQueue<T> {
    fn send(&self, body: T, delay: Option<Duration>) -> Call<'_, ()> {
        let now = self.ctx.now();
        self.lock().send(now, body, delay);
        self.sent.notify_waiters();
        Call::ready(Ok(()))
    }

    fn receive(&self, max: usize, wait: Duration) -> Call<'_, Vec<Received<T>>> {
        let now = self.ctx.now();
        let deadline = now + wait.min(MAX_WAIT);
        // A message there, or no wait: answered at once.
        match self.try_receive(now, max) {
            Ok(batch) => return Call::ready(Ok(batch)),
            Err(_) if now >= deadline => return Call::ready(Ok(Vec::new())),
            Err(_) => {}
        }
        Call::waiting(async move {
            loop {
                let notified = self.sent.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let now = self.ctx.now();
                let next = match self.try_receive(now, max) {
                    Ok(batch) => return Ok(batch),
                    Err(next) => next,
                };
                if now >= deadline {
                    return Ok(Vec::new());
                }
                // Long polling: a send, the next message becoming visible, or the wait's end.
                let until = next.filter(|t| *t > now).map_or(deadline, |t| t.min(deadline));
                tokio::select! {
                    biased;
                    () = &mut notified => {}
                    () = self.ctx.sleep(until - now) => {}
                }
            }
        })
    }

    fn delete(&self, handle: Handle) -> Call<'_, bool> {
        let done = self.lock().delete(handle.id, handle.receipt);
        Call::ready(Ok(done))
    }

    fn change_visibility(&self, handle: Handle, timeout: Duration) -> Call<'_, bool> {
        let now = self.ctx.now();
        let done = self.lock().change_visibility(now, handle.id, handle.receipt, timeout);
        self.sent.notify_waiters();
        Call::ready(Ok(done))
    }

    fn attributes(&self) -> Call<'_, QueueAttributes> {
        let now = self.ctx.now();
        let q = self.lock();
        let a = QueueAttributes {
            messages: q.len() as u64,
            oldest_age: q.oldest_age(now),
        };
        Call::ready(Ok(a))
    }
}

/// A table that retries throttled requests, as the AWS SDKs do: a request refused for capacity
/// (`ProvisionedThroughputExceededException`) is sent again when the capacity is back (the
/// model's hint). A decorator over any [`KeyValueTable`], in the manner of a tower layer; it
/// counts the refusals.
pub struct Retrying<T> {
    inner: T,
    clock: Arc<dyn Clock>,
    throttles: std::sync::atomic::AtomicU64,
}

impl<T: KeyValueTable> Retrying<T> {
    /// `inner`, retried on `clock`.
    pub fn new(inner: T, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            clock,
            throttles: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Requests refused for capacity so far (each retried).
    pub fn throttles(&self) -> u64 {
        self.throttles.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `op`'s answer, sent again while it is a throttling: answered at once when the first
    /// answer is (no allocation on the common path).
    fn retry<'a, R: Send + 'a>(&'a self, mut op: impl FnMut() -> Call<'a, R> + Send + 'a) -> Call<'a, R> {
        let first = op();
        if first.settled() {
            return first;
        }
        Call::waiting(async move {
            let mut next = first;
            loop {
                match next.await {
                    Err(ServiceError::Throttled { retry_after }) => {
                        self.throttles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.clock.sleep(retry_after.max(Duration::from_millis(1))).await;
                    }
                    r => return r,
                }
                next = op();
            }
        })
    }
}

impl<T: KeyValueTable> KeyValueTable for Retrying<T> {
    fn get<'a>(&'a self, key: Key) -> Call<'a, Option<Item>> {
        self.retry(move || self.inner.get(key))
    }

    fn put<'a>(&'a self, key: Key, item: Item, condition: Condition) -> Call<'a, ()> {
        self.retry(move || self.inner.put(key, item.clone(), condition))
    }

    fn add<'a>(&'a self, key: Key, attr: &'static str, n: i64) -> Call<'a, i64> {
        self.retry(move || self.inner.add(key, attr, n))
    }

    fn set<'a>(&'a self, key: Key, attr: &'static str, value: Attr) -> Call<'a, ()> {
        self.retry(move || self.inner.set(key, attr, value))
    }

    fn delete<'a>(&'a self, key: Key) -> Call<'a, ()> {
        self.retry(move || self.inner.delete(key))
    }

    fn delete_if<'a>(&'a self, key: Key, attr: &'static str, value: i64) -> Call<'a, ()> {
        self.retry(move || self.inner.delete_if(key, attr, value))
    }

    fn query<'a>(&'a self, name: &'static str, id: u32) -> Call<'a, Vec<(Key, Item)>> {
        self.retry(move || self.inner.query(name, id))
    }

    fn scan<'a>(&'a self, name: &'static str) -> Call<'a, Vec<(Key, Item)>> {
        self.retry(move || self.inner.scan(name))
    }
}

/// A DynamoDB table in virtual time: [`Table`] behind a lock, read against the run's clock.
pub struct SimTable {
    ctx: Arc<dyn Clock>,
    table: Mutex<Table>,
}

impl SimTable {
    /// An empty table on `clock` with this capacity.
    pub fn new(clock: Arc<dyn Clock>, capacity: Capacity) -> Self {
        Self {
            ctx: clock,
            table: Mutex::new(Table::new(capacity)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().expect("no task panicked holding the table")
    }

    /// The pure model, for tests and figures.
    pub fn with<R>(&self, f: impl FnOnce(&Table) -> R) -> R {
        f(&self.lock())
    }

    /// The time, read only where capacity is provisioned: an on-demand table never throttles,
    /// and reading the clock was a tenth of a choreography's time.
    fn now(&self, t: &Table) -> Duration {
        if t.provisioned() {
            self.ctx.now()
        } else {
            Duration::ZERO
        }
    }
}

fn ready<'a, T: Send + 'a>(r: Result<T, DynamoError>) -> Call<'a, T> {
    Call::ready(r.map_err(ServiceError::from))
}

impl KeyValueTable for SimTable {
    fn get<'a>(&'a self, key: Key) -> Call<'a, Option<Item>> {
        let mut t = self.lock();
        let now = self.now(&t);
        ready(t.get(now, key))
    }

    fn put<'a>(&'a self, key: Key, item: Item, condition: Condition) -> Call<'a, ()> {
        let mut t = self.lock();
        let now = self.now(&t);
        let r = match condition {
            Condition::Always => t.put(now, key, item),
            Condition::Absent => t.put_if_absent(now, key, item),
            Condition::AbsentOrBelow { attr, value } => {
                t.put_unless(now, key, item, |old| old.number(attr).is_some_and(|v| v >= value))
            }
        };
        ready(r)
    }

    fn add<'a>(&'a self, key: Key, attr: &'static str, n: i64) -> Call<'a, i64> {
        let mut t = self.lock();
        let now = self.now(&t);
        ready(t.add(now, key, attr, n))
    }

    fn set<'a>(&'a self, key: Key, attr: &'static str, value: Attr) -> Call<'a, ()> {
        let mut t = self.lock();
        let now = self.now(&t);
        ready(t.set(now, key, attr, value))
    }

    fn delete<'a>(&'a self, key: Key) -> Call<'a, ()> {
        let mut t = self.lock();
        let now = self.now(&t);
        ready(t.delete(now, key))
    }

    fn delete_if<'a>(&'a self, key: Key, attr: &'static str, value: i64) -> Call<'a, ()> {
        let mut t = self.lock();
        let now = self.now(&t);
        ready(t.delete_if(now, key, |item| item.number(attr) == Some(value)))
    }

    fn query<'a>(&'a self, name: &'static str, id: u32) -> Call<'a, Vec<(Key, Item)>> {
        let mut t = self.lock();
        let now = self.now(&t);
        ready(t.query(now, name, id))
    }

    fn scan<'a>(&'a self, name: &'static str) -> Call<'a, Vec<(Key, Item)>> {
        let mut t = self.lock();
        let now = self.now(&t);
        ready(t.scan(now, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::rng::RunRng;

    /// Tokio's paused clock, from the test's start.
    struct Paused(tokio::time::Instant);

    impl Clock for Paused {
        fn now(&self) -> Duration {
            tokio::time::Instant::now() - self.0
        }
        fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
            Box::pin(tokio::time::sleep(d))
        }
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(Paused(tokio::time::Instant::now()))
    }

    fn queue(clock: &Arc<dyn Clock>, config: QueueConfig, dlq: Option<Arc<SimQueue<u32>>>) -> Arc<SimQueue<u32>> {
        Arc::new(SimQueue::new(clock.clone(), RunRng::new(7), config, dlq))
    }

    // Long polling (SQS Developer Guide, "Amazon SQS short and long polling"): with
    // WaitTimeSeconds, ReceiveMessage returns as soon as a message is available, or empty when
    // the wait ends; the wait is at most 20 s.

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_returns_as_soon_as_a_message_is_sent() {
        let c = clock();
        let q = queue(&c, QueueConfig::default(), None);
        let sender = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            sender.send(42, None).await.expect("sent");
        });
        let got = q.receive(10, Duration::from_secs(20)).await.expect("received");
        // It returned at the send (5 s), not at the wait's end (20 s).
        assert_eq!(got.iter().map(|r| r.body).collect::<Vec<_>>(), vec![42]);
        assert_eq!(c.now(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_on_an_empty_queue_returns_empty_when_its_wait_ends_and_never_past_twenty_seconds() {
        let c = clock();
        let q = queue(&c, QueueConfig::default(), None);
        assert!(
            q.receive(10, Duration::from_secs(7))
                .await
                .expect("answered")
                .is_empty()
        );
        assert_eq!(c.now(), Duration::from_secs(7));
        // Asked for a minute, it waits the longest SQS allows.
        assert!(
            q.receive(10, Duration::from_secs(60))
                .await
                .expect("answered")
                .is_empty()
        );
        assert_eq!(c.now(), Duration::from_secs(27));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_returns_when_a_hidden_message_becomes_visible_again() {
        // Received at 0 and not deleted, the message is hidden for the 30 s visibility timeout:
        // a long poll from 15 s returns it at 30 s.
        let c = clock();
        let q = queue(&c, QueueConfig::default(), None);
        q.send(1, None).await.expect("sent");
        assert_eq!(q.receive(1, Duration::ZERO).await.expect("received").len(), 1);
        tokio::time::sleep(Duration::from_secs(15)).await;
        let again = q.receive(1, Duration::from_secs(20)).await.expect("received");
        assert_eq!(again[0].receive_count, 2);
        assert_eq!(c.now(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_past_max_receive_count_is_received_from_the_dead_letter_queue() {
        // Redrive policy maxReceiveCount = 2 (SQS Developer Guide, "Using dead-letter queues"):
        // the third receive moves the message to the DLQ instead of delivering it, and a
        // consumer of the DLQ gets it there, with the same body and a fresh receive count.
        let c = clock();
        let dlq = queue(&c, QueueConfig::default(), None);
        let config = QueueConfig {
            max_receive_count: Some(2),
            visibility_timeout: Duration::from_secs(1),
            ..QueueConfig::default()
        };
        let q = queue(&c, config, Some(dlq.clone()));
        q.send(9, None).await.expect("sent");
        for n in 1..=2 {
            let r = q.receive(1, Duration::from_secs(20)).await.expect("received");
            assert_eq!(r[0].receive_count, n);
        }
        assert!(q.receive(1, Duration::from_secs(5)).await.expect("answered").is_empty());
        let dead = dlq.receive(10, Duration::ZERO).await.expect("received");
        assert_eq!((dead[0].body, dead[0].receive_count), (9, 1));
        assert_eq!(q.attributes().await.expect("attributes").messages, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_conditional_put_on_an_expired_claim_takes_it_over() {
        // `attribute_not_exists(pk) OR #until < :now`: a claim until 10 blocks at 5, not at 11.
        let t = SimTable::new(clock(), Capacity::OnDemand);
        let claim = |now| Condition::AbsentOrBelow {
            attr: "until",
            value: now,
        };
        t.put(Key::new("claim", 1), Item::new().with("until", 10i64), claim(0))
            .await
            .expect("absent: taken");
        assert_eq!(
            t.put(Key::new("claim", 1), Item::new().with("until", 15i64), claim(5))
                .await,
            Err(ServiceError::ConditionFailed)
        );
        t.put(Key::new("claim", 1), Item::new().with("until", 21i64), claim(11))
            .await
            .expect("expired: taken over");
        assert_eq!(
            t.get(Key::new("claim", 1)).await,
            Ok(Some(Item::new().with("until", 21i64)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_conditional_delete_removes_a_claim_only_while_it_is_its_holders() {
        // A holder whose claim expired and was taken over must not delete the new holder's.
        let t = SimTable::new(clock(), Capacity::OnDemand);
        t.put(
            Key::new("claim", 1),
            Item::new().with("until", 21i64),
            Condition::Always,
        )
        .await
        .expect("put");
        assert_eq!(
            t.delete_if(Key::new("claim", 1), "until", 10).await,
            Err(ServiceError::ConditionFailed)
        );
        assert_eq!(
            t.get(Key::new("claim", 1)).await,
            Ok(Some(Item::new().with("until", 21i64)))
        );
        t.delete_if(Key::new("claim", 1), "until", 21)
            .await
            .expect("its holder's");
        assert_eq!(t.get(Key::new("claim", 1)).await, Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_query_returns_one_partition_in_key_order() {
        let t = SimTable::new(clock(), Capacity::OnDemand);
        for (id, sort) in [(2, 1), (1, 10), (10, 0), (1, 3), (1, 0)] {
            t.put(Key::sorted("result", id, sort), Item::new(), Condition::Always)
                .await
                .expect("put");
        }
        t.put(Key::new("result", 1), Item::new(), Condition::Always)
            .await
            .expect("put");
        let keys: Vec<String> = t
            .query("result", 1)
            .await
            .expect("query")
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect();
        // Only partition `result#1` (not `result#10`), its sort keys in numeric order (10 after
        // 3), the item without a sort key first.
        assert_eq!(keys, vec!["result#1", "result#1#0", "result#1#3", "result#1#10"]);
    }
}
