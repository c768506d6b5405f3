//! The node's object store: immutable values (or task errors) by [`ObjectId`].
//!
//! # Design
//! An object is created *pending* when the task that will produce it is
//! submitted, and becomes *ready* exactly once: with a value
//! ([`Object::Value`], MessagePack bytes) or with the task's error
//! ([`Object::Error`]). Readers that find it pending get a
//! [`tokio::sync::oneshot`] receiver that fires when it becomes ready (or is
//! freed). Values are [`Bytes`], so handing one to many readers never copies.
//!
//! The store has a byte capacity for values held in memory. When an insert
//! pushes it over, the least recently used unpinned values are written to
//! the spill directory and dropped from memory; a later read restores them
//! transparently. Writing happens outside the lock: a value being spilled
//! stays readable from memory until its file is complete.
//!
//! Every object has an owner (the job that created it). When a job ends,
//! [`ObjectStore::free_owner`] removes all it owns, spilled files included.
//! Errors are small and never spill.

pub mod buffers;
pub mod named;
mod spill;

use crate::ids::{ObjectId, OwnerId};
use crate::sync::MutexExt;
use bytes::Bytes;
use prism_abi::{StoreStats, WireError};
use spill::SpillDir;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// A ready object: a value or the error its task ended with.
#[derive(Clone, Debug)]
pub enum Object {
    /// MessagePack bytes.
    Value(Bytes),
    /// The producing task's failure.
    Error(Arc<WireError>),
}

/// What a reader finds under an id.
#[derive(Debug)]
pub enum Lookup {
    /// The object is ready.
    Ready(Object),
    /// Not yet produced: the receiver fires when it is ready or freed.
    Pending(oneshot::Receiver<()>),
    /// No such object (never existed, or freed).
    NotFound,
}

/// Readiness of an object, without reading it.
#[derive(Debug)]
pub enum Watch {
    /// Ready (a value, spilled or not, or an error).
    Ready,
    /// Not yet produced: the receiver fires when it is ready or freed.
    Pending(oneshot::Receiver<()>),
    /// No such object.
    NotFound,
}

/// Failures of the object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A single value larger than the whole in-memory capacity.
    #[error("object of {size} bytes exceeds the object store capacity of {capacity} bytes")]
    TooLarge {
        /// Size of the value.
        size: u64,
        /// The store's capacity.
        capacity: u64,
    },
    /// Reading or writing a spill file failed.
    #[error("object spill I/O failed: {0}")]
    Spill(#[from] std::io::Error),
}

/// Registers a waiter on a pending object. Waiters whose receiver is
/// gone (a `wait` that timed out, a cancelled reader) are dropped whenever
/// the list is full, before it would grow: it grows only when more than
/// half of it is live, so a guest polling a pending object in a loop holds
/// at most about twice the live waiters, at amortized constant cost.
fn add_waiter(waiters: &mut Vec<oneshot::Sender<()>>) -> oneshot::Receiver<()> {
    if waiters.len() >= 8 && waiters.len() == waiters.capacity() {
        waiters.retain(|w| !w.is_closed());
    }
    let (tx, rx) = oneshot::channel();
    waiters.push(tx);
    rx
}

enum State {
    Pending(Vec<oneshot::Sender<()>>),
    Value {
        bytes: Bytes,
        lru: u64,
        spilling: bool,
    },
    Spilled {
        size: u64,
    },
    Error(Arc<WireError>),
}

struct Entry {
    owner: OwnerId,
    state: State,
    pins: u32,
    /// Whether its value's bytes count against its owner's tenant quota
    /// (see [`ObjectStore::put_counted`]), so freeing it gives them back.
    counted: bool,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<ObjectId, Entry>,
    /// Recency order of in-memory values: tick → id.
    lru: BTreeMap<u64, ObjectId>,
    tick: u64,
    bytes_in_memory: u64,
    bytes_spilled: u64,
    spilled_objects: u64,
}

impl Inner {
    fn touch(&mut self, id: ObjectId) -> Option<u64> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(&id)?;
        if let State::Value { lru, .. } = &mut entry.state {
            self.lru.remove(lru);
            *lru = tick;
            self.lru.insert(tick, id);
            return Some(tick);
        }
        None
    }
}

/// The per-node object store. Cheap to share behind an `Arc`.
pub struct ObjectStore {
    inner: Mutex<Inner>,
    capacity: u64,
    spill: SpillDir,
    /// The tag of the node this store belongs to, carried by every id it
    /// mints (0 in an embedded cluster).
    tag: u32,
    /// Copies pulled from other nodes: (objects, bytes), since the start.
    pulled: (std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64),
}

impl ObjectStore {
    /// A store holding up to `capacity` bytes of values in memory, spilling
    /// the rest into `spill_dir` (created if missing), whose ids carry no
    /// node tag (an embedded cluster's).
    pub fn new(capacity: u64, spill_dir: PathBuf) -> Result<Self, StoreError> {
        Self::with_tag(capacity, spill_dir, 0)
    }

    /// Like [`ObjectStore::new`], for the node with `tag` in a multi-node
    /// cluster: every id it mints carries the tag.
    pub fn with_tag(capacity: u64, spill_dir: PathBuf, tag: u32) -> Result<Self, StoreError> {
        Ok(ObjectStore {
            inner: Mutex::new(Inner::default()),
            capacity,
            spill: SpillDir::new(spill_dir)?,
            tag,
            pulled: Default::default(),
        })
    }

    /// Counts a copy of `bytes` pulled from another node.
    pub fn count_pulled(&self, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.pulled.0.fetch_add(1, Relaxed);
        self.pulled.1.fetch_add(bytes, Relaxed);
    }

    /// Copies pulled from other nodes since the store started: (objects,
    /// bytes).
    pub fn pulled(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.pulled.0.load(Relaxed), self.pulled.1.load(Relaxed))
    }

    /// The tag of this store's node (0 in an embedded cluster).
    pub fn node_tag(&self) -> u32 {
        self.tag
    }

    /// A fresh object id carrying this node's tag.
    pub fn new_object_id(&self) -> ObjectId {
        ObjectId::random_with_tag(self.tag)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock is a bug in this module; the data
        // is still consistent enough to serve reads, so keep going.
        self.inner.locked()
    }

    /// Registers `id` as pending, owned by `owner`. A no-op if it exists.
    pub fn create_pending(&self, id: ObjectId, owner: OwnerId) {
        let mut inner = self.lock();
        inner.entries.entry(id).or_insert(Entry {
            owner,
            state: State::Pending(Vec::new()),
            pins: 0,
            counted: false,
        });
    }

    /// Stores a new ready value under a fresh id.
    pub fn put(&self, owner: OwnerId, bytes: Bytes) -> Result<ObjectId, StoreError> {
        self.put_as(owner, bytes, false)
    }

    /// Like [`ObjectStore::put`], for a value whose bytes were counted
    /// against the owner's tenant quota: [`ObjectStore::free`] reports them.
    pub fn put_counted(&self, owner: OwnerId, bytes: Bytes) -> Result<ObjectId, StoreError> {
        self.put_as(owner, bytes, true)
    }

    fn put_as(&self, owner: OwnerId, bytes: Bytes, counted: bool) -> Result<ObjectId, StoreError> {
        let id = self.new_object_id();
        self.create_pending(id, owner);
        if let Err(e) = self.complete_as(id, Object::Value(bytes), counted) {
            self.lock().entries.remove(&id);
            return Err(e);
        }
        Ok(id)
    }

    /// Makes a pending object ready and wakes its readers. An object that
    /// was freed meanwhile (its job ended) is dropped silently; an object
    /// that is already ready keeps its first value.
    pub fn complete(&self, id: ObjectId, object: Object) -> Result<(), StoreError> {
        self.complete_as(id, object, false)
    }

    /// Like [`ObjectStore::complete`], for a value whose bytes were
    /// counted against the owner's tenant quota.
    pub fn complete_counted(&self, id: ObjectId, object: Object) -> Result<(), StoreError> {
        self.complete_as(id, object, true)
    }

    fn complete_as(&self, id: ObjectId, object: Object, counted: bool) -> Result<(), StoreError> {
        let size = match &object {
            Object::Value(b) => b.len() as u64,
            Object::Error(_) => 0,
        };
        if size > self.capacity {
            let error = WireError::new(
                prism_abi::ErrorKind::System,
                StoreError::TooLarge {
                    size,
                    capacity: self.capacity,
                }
                .to_string(),
            );
            self.complete(id, Object::Error(Arc::new(error)))?;
            return Err(StoreError::TooLarge {
                size,
                capacity: self.capacity,
            });
        }
        let waiters = {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            let Some(entry) = inner.entries.get_mut(&id) else {
                return Ok(());
            };
            let State::Pending(waiters) = &mut entry.state else {
                return Ok(());
            };
            let waiters = std::mem::take(waiters);
            entry.counted = counted && matches!(object, Object::Value(_));
            entry.state = match object {
                Object::Value(bytes) => State::Value {
                    bytes,
                    lru: tick,
                    spilling: false,
                },
                Object::Error(e) => State::Error(e),
            };
            if matches!(entry.state, State::Value { .. }) {
                inner.lru.insert(tick, id);
                inner.bytes_in_memory += size;
            }
            waiters
        };
        for w in waiters {
            let _ = w.send(());
        }
        self.spill_if_needed()
    }

    /// Looks up an object, restoring it from disk if it was spilled.
    pub fn lookup(&self, id: ObjectId) -> Result<Lookup, StoreError> {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(&id) else {
            return Ok(Lookup::NotFound);
        };
        match &mut entry.state {
            State::Pending(waiters) => Ok(Lookup::Pending(add_waiter(waiters))),
            State::Error(e) => Ok(Lookup::Ready(Object::Error(e.clone()))),
            State::Value { bytes, .. } => {
                let bytes = bytes.clone();
                inner.touch(id);
                Ok(Lookup::Ready(Object::Value(bytes)))
            }
            State::Spilled { .. } => {
                drop(inner);
                self.restore(id)
            }
        }
    }

    /// Readiness of an object; registers a waiter if it is pending. Never
    /// restores a spilled value.
    pub fn watch(&self, id: ObjectId) -> Watch {
        let mut inner = self.lock();
        match inner.entries.get_mut(&id) {
            None => Watch::NotFound,
            Some(Entry {
                state: State::Pending(waiters),
                ..
            }) => Watch::Pending(add_waiter(waiters)),
            Some(_) => Watch::Ready,
        }
    }

    /// Whether the object is ready (a value or an error). Never restores.
    pub fn is_ready(&self, id: ObjectId) -> Option<bool> {
        let inner = self.lock();
        inner
            .entries
            .get(&id)
            .map(|e| !matches!(e.state, State::Pending(_)))
    }

    /// The owner of an object, if it exists.
    pub fn owner(&self, id: ObjectId) -> Option<OwnerId> {
        self.lock().entries.get(&id).map(|e| e.owner)
    }

    /// Keeps an object in memory (not spilled) until [`ObjectStore::unpin`].
    pub fn pin(&self, id: ObjectId) {
        if let Some(e) = self.lock().entries.get_mut(&id) {
            e.pins += 1;
        }
    }

    /// Releases one [`ObjectStore::pin`].
    pub fn unpin(&self, id: ObjectId) {
        if let Some(e) = self.lock().entries.get_mut(&id) {
            e.pins = e.pins.saturating_sub(1);
        }
    }

    /// Removes every object `owner` owns; readers waiting on pending ones
    /// see them vanish. Returns how many objects were freed.
    pub fn free_owner(&self, owner: OwnerId) -> usize {
        let ids: Vec<ObjectId> = self
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(id, _)| *id)
            .collect();
        self.remove_all(&ids)
    }

    /// Removes one object (a value handed on to another node).
    pub fn remove(&self, id: ObjectId) {
        self.remove_all(&[id]);
    }

    /// Frees object `id` if `owner` owns it and it is ready (a value,
    /// spilled or not, or an error); returns the bytes it held that were
    /// counted against the owner's quota (0 for a value that was not, such
    /// as a copy pulled from another node). Pending objects and other
    /// owners' objects are left alone (`None`).
    pub fn free(&self, owner: OwnerId, id: ObjectId) -> Option<u64> {
        let size = {
            let inner = self.lock();
            let entry = inner.entries.get(&id).filter(|e| e.owner == owner)?;
            let size = match &entry.state {
                State::Pending(_) => return None,
                State::Value { bytes, .. } => bytes.len() as u64,
                State::Spilled { size } => *size,
                State::Error(_) => 0,
            };
            if entry.counted { size } else { 0 }
        };
        // Between the check and here only this owner's own calls can change
        // the entry; a concurrent free of the same id finds it gone.
        (self.remove_all(&[id]) == 1).then_some(size)
    }

    fn remove_all(&self, ids: &[ObjectId]) -> usize {
        let mut spilled = Vec::new();
        let freed = {
            let mut inner = self.lock();
            let mut freed = 0;
            for id in ids {
                if let Some(entry) = inner.entries.remove(id) {
                    match entry.state {
                        State::Value { bytes, lru, .. } => {
                            inner.lru.remove(&lru);
                            inner.bytes_in_memory -= bytes.len() as u64;
                        }
                        State::Spilled { size } => {
                            inner.bytes_spilled -= size;
                            inner.spilled_objects -= 1;
                            spilled.push(*id);
                        }
                        State::Pending(_) | State::Error(_) => {}
                    }
                    freed += 1;
                }
            }
            freed
        };
        for id in spilled {
            self.spill.remove(id);
        }
        freed
    }

    /// Current statistics.
    pub fn stats(&self) -> StoreStats {
        let inner = self.lock();
        StoreStats {
            objects: inner.entries.len() as u64,
            bytes_in_memory: inner.bytes_in_memory,
            bytes_spilled: inner.bytes_spilled,
            spilled_objects: inner.spilled_objects,
        }
    }

    /// The same figures for the objects `owner` owns on this node only:
    /// what a guest may see (node-wide figures would tell one tenant the
    /// count and sizes of another's objects). One pass over the entries.
    pub fn stats_of(&self, owner: OwnerId) -> StoreStats {
        let inner = self.lock();
        let mut stats = StoreStats::default();
        for entry in inner.entries.values().filter(|e| e.owner == owner) {
            stats.objects += 1;
            match &entry.state {
                State::Value { bytes, .. } => stats.bytes_in_memory += bytes.len() as u64,
                State::Spilled { size } => {
                    stats.bytes_spilled += size;
                    stats.spilled_objects += 1;
                }
                State::Pending(_) | State::Error(_) => {}
            }
        }
        stats
    }

    /// The in-memory capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Spills least recently used, unpinned values until memory use is at
    /// or below capacity.
    fn spill_if_needed(&self) -> Result<(), StoreError> {
        let victims: Vec<(ObjectId, Bytes)> = {
            let mut inner = self.lock();
            let mut planned = 0u64;
            let mut victims = Vec::new();
            let over = inner.bytes_in_memory.saturating_sub(self.capacity);
            if over == 0 {
                return Ok(());
            }
            let candidates: Vec<ObjectId> = inner.lru.values().copied().collect();
            for id in candidates {
                if planned >= over {
                    break;
                }
                let Some(entry) = inner.entries.get_mut(&id) else {
                    continue;
                };
                if entry.pins > 0 {
                    continue;
                }
                if let State::Value {
                    bytes, spilling, ..
                } = &mut entry.state
                    && !*spilling
                {
                    *spilling = true;
                    planned += bytes.len() as u64;
                    victims.push((id, bytes.clone()));
                }
            }
            victims
        };
        let mut result = Ok(());
        for (id, bytes) in victims {
            let written = self.spill.write(id, &bytes);
            let mut inner = self.lock();
            let Some(entry) = inner.entries.get_mut(&id) else {
                drop(inner);
                self.spill.remove(id);
                continue;
            };
            match (&written, &mut entry.state) {
                (Ok(()), State::Value { lru, bytes, .. }) => {
                    let (lru, size) = (*lru, bytes.len() as u64);
                    entry.state = State::Spilled { size };
                    inner.lru.remove(&lru);
                    inner.bytes_in_memory -= size;
                    inner.bytes_spilled += size;
                    inner.spilled_objects += 1;
                }
                (Err(_), State::Value { spilling, .. }) => *spilling = false,
                _ => {}
            }
            if let Err(e) = written {
                tracing::warn!(object = %id, error = %e, "spilling an object failed; it stays in memory");
                result = Err(StoreError::Spill(e));
            }
        }
        result
    }

    fn restore(&self, id: ObjectId) -> Result<Lookup, StoreError> {
        let bytes = match self.spill.read(id) {
            Ok(bytes) => Bytes::from(bytes),
            // Freed (or restored by another reader) since the lookup.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match self.lock().entries.get(&id).map(|e| &e.state) {
                    None => Ok(Lookup::NotFound),
                    Some(State::Value { bytes, .. }) => {
                        Ok(Lookup::Ready(Object::Value(bytes.clone())))
                    }
                    Some(_) => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            let Some(entry) = inner.entries.get_mut(&id) else {
                return Ok(Lookup::NotFound);
            };
            match &entry.state {
                State::Spilled { size } => {
                    let size = *size;
                    entry.state = State::Value {
                        bytes: bytes.clone(),
                        lru: tick,
                        spilling: false,
                    };
                    inner.lru.insert(tick, id);
                    inner.bytes_in_memory += size;
                    inner.bytes_spilled -= size;
                    inner.spilled_objects -= 1;
                }
                // Restored concurrently by another reader: use its copy.
                State::Value { bytes, .. } => {
                    return Ok(Lookup::Ready(Object::Value(bytes.clone())));
                }
                _ => return Ok(Lookup::NotFound),
            }
        }
        self.spill.remove(id);
        // Making room for the restored value may spill others; a failure
        // there does not affect this read.
        let _ = self.spill_if_needed();
        Ok(Lookup::Ready(Object::Value(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: u64) -> (ObjectStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (
            ObjectStore::new(capacity, dir.path().join("spill")).unwrap(),
            dir,
        )
    }

    fn value(lookup: Lookup) -> Bytes {
        match lookup {
            Lookup::Ready(Object::Value(b)) => b,
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn put_then_lookup_returns_the_same_bytes() {
        let (s, _d) = store(1 << 20);
        let job = OwnerId::random();
        let id = s.put(job, Bytes::from_static(b"hello")).unwrap();
        assert_eq!(value(s.lookup(id).unwrap()), Bytes::from_static(b"hello"));
        assert_eq!(s.stats().objects, 1);
        assert_eq!(s.stats().bytes_in_memory, 5);
    }

    #[test]
    fn a_tagged_store_mints_ids_that_name_its_node() {
        let dir = tempfile::tempdir().unwrap();
        let tagged = ObjectStore::with_tag(1 << 20, dir.path().join("spill"), 9).unwrap();
        let id = tagged
            .put(OwnerId::random(), Bytes::from_static(b"x"))
            .unwrap();
        assert_eq!((id.node_tag(), tagged.node_tag()), (9, 9));
        assert_eq!(tagged.new_object_id().node_tag(), 9);
    }

    #[tokio::test]
    async fn pending_readers_wake_on_complete() {
        let (s, _d) = store(1 << 20);
        let id = ObjectId::random();
        s.create_pending(id, OwnerId::random());
        let Lookup::Pending(rx) = s.lookup(id).unwrap() else {
            panic!("should be pending")
        };
        assert_eq!(s.is_ready(id), Some(false));
        s.complete(id, Object::Value(Bytes::from_static(b"v")))
            .unwrap();
        rx.await.unwrap();
        assert_eq!(value(s.lookup(id).unwrap()), Bytes::from_static(b"v"));
    }

    #[test]
    fn first_completion_wins() {
        let (s, _d) = store(1 << 20);
        let id = ObjectId::random();
        s.create_pending(id, OwnerId::random());
        s.complete(id, Object::Value(Bytes::from_static(b"a")))
            .unwrap();
        s.complete(id, Object::Value(Bytes::from_static(b"b")))
            .unwrap();
        assert_eq!(value(s.lookup(id).unwrap()), Bytes::from_static(b"a"));
    }

    #[test]
    fn least_recently_used_values_spill_and_restore_intact() {
        let (s, _d) = store(250);
        let job = OwnerId::random();
        let ids: Vec<ObjectId> = (0..5u8)
            .map(|i| s.put(job, Bytes::from(vec![i; 100])).unwrap())
            .collect();
        let stats = s.stats();
        assert!(stats.bytes_in_memory <= 250, "{stats:?}");
        assert_eq!(stats.spilled_objects, 3);
        assert_eq!(stats.bytes_spilled, 300);
        // The oldest were spilled; reading them back restores the bytes.
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                value(s.lookup(*id).unwrap()),
                Bytes::from(vec![i as u8; 100])
            );
        }
        let stats = s.stats();
        assert!(stats.bytes_in_memory <= 250);
        assert_eq!(stats.objects, 5);
    }

    #[test]
    fn free_removes_ready_objects_of_their_owner_only() {
        let (s, _d) = store(250);
        let (job, other) = (OwnerId::random(), OwnerId::random());
        let ids: Vec<ObjectId> = (0..3u8)
            .map(|i| s.put_counted(job, Bytes::from(vec![i; 100])).unwrap())
            .collect();
        assert_eq!(s.stats().spilled_objects, 1, "the first was spilled");
        // Another owner frees nothing; the owner frees a spilled and an
        // in-memory value, each once, and gets their counted sizes.
        assert_eq!(s.free(other, ids[0]), None);
        assert_eq!(s.free(job, ids[0]), Some(100));
        assert_eq!(s.free(job, ids[0]), None);
        assert_eq!(s.free(job, ids[2]), Some(100));
        assert!(matches!(s.lookup(ids[0]).unwrap(), Lookup::NotFound));
        assert!(matches!(s.lookup(ids[2]).unwrap(), Lookup::NotFound));
        assert_eq!(value(s.lookup(ids[1]).unwrap()), Bytes::from(vec![1; 100]));
        let stats = s.stats();
        assert_eq!((stats.objects, stats.spilled_objects), (1, 0));
        assert_eq!((stats.bytes_in_memory, stats.bytes_spilled), (100, 0));
        // A pending object stays; an error object is freed with no bytes.
        let pending = ObjectId::random();
        s.create_pending(pending, job);
        assert_eq!(s.free(job, pending), None);
        assert_eq!(s.is_ready(pending), Some(false));
        let error = Arc::new(WireError::new(prism_abi::ErrorKind::Application, "no"));
        s.complete_counted(pending, Object::Error(error)).unwrap();
        assert_eq!(s.free(job, pending), Some(0));
        // A value nobody counted (a pulled copy, say) gives back nothing; a
        // counted task result gives back its size.
        let uncounted = s.put(job, Bytes::from(vec![4; 50])).unwrap();
        assert_eq!(s.free(job, uncounted), Some(0));
        let result = ObjectId::random();
        s.create_pending(result, job);
        s.complete_counted(result, Object::Value(Bytes::from(vec![5; 60])))
            .unwrap();
        assert_eq!(s.free(job, result), Some(60));
    }

    #[test]
    fn pinned_values_do_not_spill() {
        let (s, _d) = store(150);
        let job = OwnerId::random();
        let first = s.put(job, Bytes::from(vec![1; 100])).unwrap();
        s.pin(first);
        let second = s.put(job, Bytes::from(vec![2; 100])).unwrap();
        assert_eq!(s.stats().spilled_objects, 1);
        assert_eq!(value(s.lookup(first).unwrap())[0], 1);
        s.unpin(first);
        assert_eq!(value(s.lookup(second).unwrap())[0], 2);
    }

    #[test]
    fn too_large_values_are_refused() {
        let (s, _d) = store(10);
        let err = s
            .put(OwnerId::random(), Bytes::from(vec![0; 11]))
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::TooLarge {
                size: 11,
                capacity: 10
            }
        ));
        assert_eq!(s.stats().objects, 0);
    }

    #[tokio::test]
    async fn freeing_a_job_removes_its_objects_and_files() {
        let (s, dir) = store(100);
        let job = OwnerId::random();
        let other = OwnerId::random();
        let a = s.put(job, Bytes::from(vec![1; 80])).unwrap();
        let _b = s.put(job, Bytes::from(vec![2; 80])).unwrap();
        let kept = s.put(other, Bytes::from(vec![3; 10])).unwrap();
        let pending = ObjectId::random();
        s.create_pending(pending, job);
        let Lookup::Pending(rx) = s.lookup(pending).unwrap() else {
            panic!()
        };
        assert_eq!(s.free_owner(job), 3);
        assert!(rx.await.is_err(), "waiters see the object vanish");
        assert!(matches!(s.lookup(a).unwrap(), Lookup::NotFound));
        assert_eq!(value(s.lookup(kept).unwrap()).len(), 10);
        let stats = s.stats();
        assert_eq!(
            (stats.objects, stats.bytes_spilled, stats.spilled_objects),
            (1, 0, 0)
        );
        let files = std::fs::read_dir(dir.path().join("spill")).unwrap().count();
        assert_eq!(files, 0);
    }

    #[test]
    fn errors_are_ready_objects() {
        let (s, _d) = store(100);
        let id = ObjectId::random();
        s.create_pending(id, OwnerId::random());
        let err = Arc::new(WireError::new(prism_abi::ErrorKind::Cancelled, "cancelled"));
        s.complete(id, Object::Error(err.clone())).unwrap();
        assert!(matches!(s.lookup(id).unwrap(), Lookup::Ready(Object::Error(e)) if *e == *err));
    }

    #[test]
    fn abandoned_waiters_do_not_accumulate() {
        let (store, _d) = store(1 << 20);
        let id = ObjectId::random();
        store.create_pending(id, OwnerId::random());
        let live = store.watch(id);
        for _ in 0..100_000 {
            // A `wait` with timeout 0: registers, then drops its receiver.
            drop(store.watch(id));
        }
        let held = match &store.lock().entries[&id].state {
            State::Pending(waiters) => waiters.capacity(),
            _ => unreachable!("still pending"),
        };
        assert!(held <= 64, "{held} waiters held for one live reader");
        store
            .complete(id, Object::Value(Bytes::from_static(b"\x01")))
            .unwrap();
        let Watch::Pending(rx) = live else {
            panic!("was pending")
        };
        assert!(rx.blocking_recv().is_ok(), "the live waiter still fires");
    }

    #[test]
    fn stats_of_an_owner_count_only_its_objects() {
        let (s, _d) = store(1 << 20);
        let (a, b) = (OwnerId::random(), OwnerId::random());
        s.put(a, Bytes::from(vec![0u8; 1_234])).unwrap();
        s.put(b, Bytes::from(vec![0u8; 10])).unwrap();
        s.put(b, Bytes::from(vec![0u8; 20])).unwrap();
        let of_a = s.stats_of(a);
        assert_eq!((of_a.objects, of_a.bytes_in_memory), (1, 1_234));
        let of_b = s.stats_of(b);
        assert_eq!((of_b.objects, of_b.bytes_in_memory), (2, 30));
        assert_eq!(s.stats_of(OwnerId::random()).objects, 0);
    }
}
