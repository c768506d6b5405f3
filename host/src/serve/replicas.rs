//! A deployment's replicas and the choice among them: the least loaded
//! replica that has room (ties broken round robin, so an idle deployment
//! spreads requests over every replica), a bounded queue when every
//! replica is full, and 503 past it. Replicas come and go while requests
//! run (autoscaling): one being drained takes no new request and leaves
//! once its last one is answered.

use crate::ids::ActorId;
use crate::sync::{MutexExt, RwLockExt};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;

/// One replica.
pub struct Replica {
    /// Its id, as the `x-prism-replica` header and the status show it.
    pub id: String,
    /// A class replica's actor (`None` while it is being replaced, and
    /// always for a function replica).
    actor: Mutex<Option<ActorId>>,
    /// Requests it runs now.
    ongoing: AtomicU32,
    /// Requests it answered.
    pub served: AtomicU64,
    /// It takes no new requests: it is leaving.
    draining: AtomicBool,
    /// When it started draining.
    drained_at: Mutex<Option<Instant>>,
}

impl Replica {
    /// A function replica: a share of the deployment's concurrency.
    pub fn function(id: String) -> Replica {
        Replica {
            id,
            actor: Mutex::new(None),
            ongoing: AtomicU32::new(0),
            served: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            drained_at: Mutex::new(None),
        }
    }

    /// A class replica: an actor.
    pub fn class(actor: ActorId) -> Replica {
        let replica = Replica::function(short_id(actor));
        *replica.actor.locked() = Some(actor);
        replica
    }

    /// Its actor, if it is a class replica that is up.
    pub fn actor(&self) -> Option<ActorId> {
        *self.actor.locked()
    }

    /// Takes its actor away (it died or hangs); whether it had one.
    pub fn take_actor(&self) -> Option<ActorId> {
        self.actor.locked().take()
    }

    /// Gives it a new actor.
    pub fn set_actor(&self, actor: ActorId) {
        *self.actor.locked() = Some(actor);
    }

    /// Requests it runs now.
    pub fn ongoing(&self) -> u32 {
        self.ongoing.load(Ordering::Relaxed)
    }

    /// Whether it is leaving.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// How long it has been draining (zero if it is not).
    pub fn drained_for(&self) -> std::time::Duration {
        self.drained_at
            .locked()
            .map_or(std::time::Duration::ZERO, |at| at.elapsed())
    }
}

/// The last 12 hex digits of an actor id (the first ones name its node).
pub fn short_id(actor: ActorId) -> String {
    hex::encode(&actor.as_bytes()[10..])
}

/// Why no replica took a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every replica is full and so is the queue.
    Overloaded,
    /// The request waited in the queue until its deadline.
    TimedOut,
}

/// The replicas of a deployment and their load.
pub struct ReplicaSet {
    replicas: RwLock<Vec<Arc<Replica>>>,
    /// Requests one replica runs at once.
    max_ongoing: u32,
    /// Requests that may wait for a replica.
    max_queued: usize,
    queued: AtomicUsize,
    cursor: AtomicUsize,
    /// Signalled when a replica finishes a request.
    freed: Notify,
    /// Class replicas: only replicas with an actor take requests.
    needs_actor: bool,
    /// Signalled when a request finds no replica at all (a deployment
    /// scaled to zero must start one).
    pub demand: Notify,
}

/// A request's hold on a replica, released on drop.
pub struct Slot<'a> {
    set: &'a ReplicaSet,
    /// The replica.
    pub replica: Arc<Replica>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.replica.ongoing.fetch_sub(1, Ordering::AcqRel);
        self.set.freed.notify_one();
    }
}

impl ReplicaSet {
    /// A set of `replicas`.
    pub fn new(replicas: Vec<Replica>, max_ongoing: u32, max_queued: u32, class: bool) -> Self {
        ReplicaSet {
            replicas: RwLock::new(replicas.into_iter().map(Arc::new).collect()),
            max_ongoing,
            max_queued: max_queued as usize,
            queued: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            freed: Notify::new(),
            needs_actor: class,
            demand: Notify::new(),
        }
    }

    /// The replicas, draining ones included.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        self.replicas.read_locked().clone()
    }

    /// Replicas that take requests (not draining).
    pub fn active(&self) -> usize {
        self.replicas
            .read_locked()
            .iter()
            .filter(|r| !r.draining())
            .count()
    }

    /// Adds a replica; waiting requests may take it at once.
    pub fn add(&self, replica: Replica) {
        self.replicas.write_locked().push(Arc::new(replica));
        self.freed.notify_waiters();
    }

    /// Starts draining the least loaded active replica; returns it.
    pub fn drain_one(&self) -> Option<Arc<Replica>> {
        let replicas = self.replicas.read_locked();
        let replica = replicas
            .iter()
            .filter(|r| !r.draining())
            .min_by_key(|r| r.ongoing())?;
        replica.draining.store(true, Ordering::Release);
        *replica.drained_at.locked() = Some(Instant::now());
        Some(replica.clone())
    }

    /// Removes the drained replicas that run nothing any more, but those
    /// `keep` keeps (other nodes may still call them); returns them
    /// (their actors are the caller's to stop).
    pub fn remove_drained(&self, keep: impl Fn(&Replica) -> bool) -> Vec<Arc<Replica>> {
        let mut replicas = self.replicas.write_locked();
        let (gone, kept): (Vec<_>, Vec<_>) = replicas
            .drain(..)
            .partition(|r| r.draining() && r.ongoing() == 0 && !keep(r));
        *replicas = kept;
        gone
    }

    /// Makes the set the replicas `wanted` (id, and a class replica's
    /// actor) as another node publishes them: new ones join, changed
    /// actors are taken, missing ones drain (requests on them finish).
    /// Drained replicas that run nothing are dropped.
    pub fn sync(&self, wanted: &[(String, Option<ActorId>)]) {
        let mut replicas = self.replicas.write_locked();
        replicas.retain(|r| !(r.draining() && r.ongoing() == 0));
        for replica in replicas.iter() {
            match wanted.iter().find(|(id, _)| *id == replica.id) {
                Some((_, actor)) => {
                    *replica.actor.locked() = *actor;
                    replica.draining.store(false, Ordering::Release);
                }
                None => replica.draining.store(true, Ordering::Release),
            }
        }
        for (id, actor) in wanted {
            if !replicas.iter().any(|r| r.id == *id) {
                let replica = Replica::function(id.clone());
                *replica.actor.locked() = *actor;
                replicas.push(Arc::new(replica));
            }
        }
        drop(replicas);
        self.freed.notify_waiters();
    }

    /// Requests waiting for a replica now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Requests running now, over every replica.
    pub fn ongoing(&self) -> u32 {
        self.replicas
            .read_locked()
            .iter()
            .map(|r| r.ongoing())
            .sum()
    }

    /// A replica for a request: at once if one has room, else after
    /// waiting in the queue (if it has room) until `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<Slot<'_>, Refusal> {
        if let Some(slot) = self.try_acquire() {
            return Ok(slot);
        }
        // Counted as waiting before it asks for a replica, so that whoever
        // answers the demand sees it.
        let full = self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued;
        if self.active() == 0 {
            self.demand.notify_one();
        }
        if full {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Overloaded);
        }
        let waited = async {
            loop {
                let freed = self.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if let Some(slot) = self.try_acquire() {
                    return slot;
                }
                freed.await;
            }
        };
        let result = tokio::time::timeout_at(deadline, waited).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        match result {
            Ok(slot) => Ok(slot),
            Err(_) => {
                // Pass on a wake-up this waiter may have taken.
                self.freed.notify_one();
                Err(Refusal::TimedOut)
            }
        }
    }

    /// The least loaded replica with room, scanning from the round-robin
    /// cursor so that ties rotate.
    fn try_acquire(&self) -> Option<Slot<'_>> {
        let replicas = self.replicas.read_locked();
        let n = replicas.len();
        if n == 0 {
            return None;
        }
        loop {
            let start = self.cursor.fetch_add(1, Ordering::Relaxed);
            let mut best: Option<(&Arc<Replica>, u32)> = None;
            for i in 0..n {
                let replica = &replicas[(start + i) % n];
                if replica.draining() || (self.needs_actor && replica.actor().is_none()) {
                    continue;
                }
                let load = replica.ongoing();
                if load < self.max_ongoing && best.is_none_or(|(_, l)| load < l) {
                    best = Some((replica, load));
                }
            }
            let (replica, load) = best?;
            if replica
                .ongoing
                .compare_exchange(load, load + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some(Slot {
                    set: self,
                    replica: replica.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn set(n: usize, max_ongoing: u32, max_queued: u32) -> ReplicaSet {
        let replicas = (0..n).map(|i| Replica::function(format!("r{i}"))).collect();
        ReplicaSet::new(replicas, max_ongoing, max_queued, false)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(200)
    }

    #[tokio::test]
    async fn idle_replicas_take_turns_and_load_goes_to_the_least_busy() {
        let set = set(3, 5, 0);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let slot = set.acquire(soon()).await.unwrap();
            seen.push(slot.replica.id.clone());
        }
        seen.sort();
        assert_eq!(seen, ["r0", "r1", "r2"]);
        // Two held on r-something: the next goes elsewhere.
        let a = set.acquire(soon()).await.unwrap();
        let b = set.acquire(soon()).await.unwrap();
        let c = set.acquire(soon()).await.unwrap();
        let mut ids = [&a.replica.id, &b.replica.id, &c.replica.id];
        ids.sort();
        assert_eq!(ids, ["r0", "r1", "r2"]);
        assert_eq!(set.ongoing(), 3);
        drop((a, b, c));
        assert_eq!(set.ongoing(), 0);
    }

    #[tokio::test]
    async fn a_full_set_queues_then_refuses() {
        let set = set(1, 1, 1);
        let held = set.acquire(soon()).await.unwrap();
        // The queue has one place: a second request waits, a third is
        // refused at once.
        let waiting = set.acquire(Instant::now() + Duration::from_secs(5));
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), waiting.as_mut())
                .await
                .is_err()
        );
        assert_eq!(set.queued(), 1);
        assert_eq!(set.acquire(soon()).await.err(), Some(Refusal::Overloaded));
        drop(held);
        let slot = waiting.await.unwrap();
        assert_eq!(slot.replica.id, "r0");
        assert_eq!(set.queued(), 0);
        // Waiting past the deadline is a timeout.
        assert_eq!(
            set.acquire(Instant::now() + Duration::from_millis(30))
                .await
                .err(),
            Some(Refusal::TimedOut)
        );
        assert_eq!(set.queued(), 0);
    }

    #[tokio::test]
    async fn drained_replicas_finish_their_requests_then_leave() {
        let set = set(2, 5, 5);
        let held = set.acquire(soon()).await.unwrap();
        let busy = held.replica.id.clone();
        // The idle one drains first and leaves at once.
        let idle = set.drain_one().unwrap();
        assert_ne!(idle.id, busy);
        assert_eq!(set.remove_drained(|_| false).len(), 1);
        // The busy one drains: no new request, but it stays until done.
        assert_eq!(set.drain_one().unwrap().id, busy);
        assert_eq!(set.active(), 0);
        assert!(set.remove_drained(|_| false).is_empty());
        // A request now finds no replica: it asks for one and waits.
        let waiting = set.acquire(Instant::now() + Duration::from_secs(5));
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), waiting.as_mut())
                .await
                .is_err()
        );
        tokio::time::timeout(Duration::from_secs(1), set.demand.notified())
            .await
            .unwrap();
        drop(held);
        assert_eq!(set.remove_drained(|_| false).len(), 1);
        set.add(Replica::function("fresh".into()));
        assert_eq!(waiting.await.unwrap().replica.id, "fresh");
    }

    #[tokio::test]
    async fn class_replicas_without_an_actor_take_nothing() {
        let a = Replica::class(ActorId::random_with_tag(0));
        let b = Replica::class(ActorId::random_with_tag(0));
        let b_id = b.id.clone();
        a.take_actor();
        let set = ReplicaSet::new(vec![a, b], 5, 0, true);
        for _ in 0..4 {
            assert_eq!(set.acquire(soon()).await.unwrap().replica.id, b_id);
        }
    }

    #[tokio::test]
    async fn a_synced_set_follows_the_published_replicas() {
        let set = ReplicaSet::new(Vec::new(), 1, 4, true);
        let actor = ActorId::random_with_tag(1);
        // A request waits for the first replica to be published.
        let waiting = set.acquire(Instant::now() + Duration::from_secs(5));
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiting.as_mut())
                .await
                .is_err()
        );
        set.sync(&[("a".into(), Some(actor))]);
        let held = waiting.await.unwrap();
        assert_eq!(held.replica.actor(), Some(actor));
        // "a" is replaced by "b": "a" drains until its request ends.
        let other = ActorId::random_with_tag(2);
        set.sync(&[("b".into(), Some(other))]);
        assert_eq!(set.active(), 1);
        assert_eq!(set.replicas().len(), 2);
        assert_eq!(set.acquire(soon()).await.unwrap().replica.id, "b");
        drop(held);
        set.sync(&[("b".into(), None)]);
        assert_eq!(set.replicas().len(), 1);
        // A replica being replaced (no actor) takes nothing.
        assert_eq!(
            set.acquire(Instant::now() + Duration::from_millis(20))
                .await
                .err(),
            Some(Refusal::TimedOut)
        );
    }
}
