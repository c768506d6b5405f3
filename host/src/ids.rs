//! Identifiers shared by every part of the node.
//!
//! Object ids are 128 random bits from the operating system's CSPRNG: they
//! are capabilities, so they must be unguessable. Job ids are random too
//! (they name jobs across restarts); task ids are a per-node counter.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes fetched from the operating system's CSPRNG per refill (4 KiB).
const RANDOM_BATCH: usize = 4096;

thread_local! {
    /// Unused CSPRNG output of this thread: one `getrandom` call serves 256
    /// ids instead of one (ids are minted on every submit and put).
    static RANDOM: std::cell::RefCell<([u8; RANDOM_BATCH], usize)> =
        const { std::cell::RefCell::new(([0; RANDOM_BATCH], RANDOM_BATCH)) };
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    RANDOM.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (pool, used) = &mut *guard;
        if *used + N > RANDOM_BATCH {
            // The OS random source failing means the machine cannot be
            // trusted to make secrets at all; there is no way to continue.
            getrandom::fill(pool).expect("the operating system's random source failed");
            *used = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&pool[*used..*used + N]);
        // Forget what was handed out.
        pool[*used..*used + N].fill(0);
        *used += N;
        out
    })
}

/// Defines a 16-byte random identifier type.
macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// A fresh random id, never all zeros, with no node tag (an
            /// embedded cluster's, or one that names no node).
            pub fn random() -> Self {
                Self::random_with_tag(0)
            }

            /// A fresh random id carrying `tag` (never all zeros): minted
            /// by, or for, the node with that tag. An id then says where
            /// its object or actor lives (as Ray's ids name their owner),
            /// and the remaining 96 random bits keep it unguessable.
            pub fn random_with_tag(tag: u32) -> Self {
                loop {
                    let mut bytes = random_bytes::<16>();
                    if tag != 0 {
                        bytes[..4].copy_from_slice(&tag.to_be_bytes());
                    }
                    if bytes != [0; 16] {
                        return $name(bytes);
                    }
                }
            }

            /// The tag of the node that minted the id (its first four
            /// bytes; meaningful only in a multi-node cluster).
            pub fn node_tag(&self) -> u32 {
                u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
            }

            /// The id from its 16 bytes (as it crosses the ABI).
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }

            /// The id's 16 bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

random_id!(
    /// An unforgeable object id. The all-zero id is never allocated.
    ObjectId
);

random_id!(
    /// An unforgeable actor id. The all-zero id is never allocated.
    ActorId
);

/// A job: one driver run and everything it creates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u64);

impl JobId {
    /// A fresh random id.
    pub fn random() -> Self {
        JobId(u64::from_le_bytes(random_bytes::<8>()))
    }

    /// The id as a number (as it crosses between nodes).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The id from [`JobId::as_u64`].
    pub fn from_u64(value: u64) -> Self {
        JobId(value)
    }

    /// Parses what `Display` prints (`job-` and 16 hex digits); the prefix
    /// may be left out.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("job-").unwrap_or(text);
        if hex.len() != 16 {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(JobId)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job-{:016x}", self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Who owns objects, tasks and placement groups on a node, and whose
/// context (tenant, grant, log) a guest runs in: a job — its driver and
/// the tasks it submits, under the job's own id ([`OwnerId::of_job`]) —
/// or an actor — its calls and what they create, under an id of its own
/// ([`OwnerId::random`]). What an owner holds is freed when it ends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(u64);

impl OwnerId {
    /// The owner that is job `job`.
    pub fn of_job(job: JobId) -> Self {
        OwnerId(job.as_u64())
    }

    /// A fresh owner (an actor's).
    pub fn random() -> Self {
        OwnerId(u64::from_le_bytes(random_bytes::<8>()))
    }

    /// The id as a number (as it crosses between nodes).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The id from [`OwnerId::as_u64`].
    pub fn from_u64(value: u64) -> Self {
        OwnerId(value)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "owner-{:016x}", self.0)
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A task within one node's lifetime (for logs and traces).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TaskId(u64);

impl TaskId {
    /// The next id from a process-wide counter.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TaskId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

/// A module's content address: the sha256 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleHash([u8; 32]);

impl ModuleHash {
    /// Hashes module bytes.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        ModuleHash(sha2::Sha256::digest(bytes).into())
    }

    /// Parses `sha256:<64 hex digits>` (the prefix may be left out).
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(ModuleHash(bytes))
    }
}

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_and_module_hashes_parse_what_they_print() {
        let id = JobId::random();
        assert_eq!(JobId::parse(&id.to_string()), Some(id));
        assert_eq!(OwnerId::of_job(id).as_u64(), id.as_u64());
        assert_ne!(OwnerId::random(), OwnerId::random());
        assert_eq!(JobId::parse("job-xyz"), None);
        let hash = ModuleHash::of(b"wasm");
        assert_eq!(ModuleHash::parse(&format!("{hash:?}")), Some(hash));
        assert_eq!(ModuleHash::parse(&hash.to_string()), Some(hash));
        assert_eq!(ModuleHash::parse("sha256:00"), None);
    }

    #[test]
    fn object_ids_are_distinct_and_never_zero() {
        let a = ObjectId::random();
        let b = ObjectId::random();
        assert_ne!(a, b);
        assert_ne!(a.as_bytes(), &[0; 16]);
        assert_eq!(ObjectId::from_bytes(*a.as_bytes()), a);
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn tagged_ids_name_their_node_and_stay_random() {
        let a = ObjectId::random_with_tag(0x0102_0304);
        let b = ObjectId::random_with_tag(0x0102_0304);
        assert_eq!(a.node_tag(), 0x0102_0304);
        assert_eq!(b.node_tag(), 0x0102_0304);
        assert_ne!(a, b);
        assert_eq!(ActorId::random_with_tag(7).node_tag(), 7);
    }

    #[test]
    fn module_hash_is_sha256() {
        assert_eq!(
            ModuleHash::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
