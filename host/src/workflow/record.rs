//! What the workflow log keeps: workflows, steps and schedules.

use serde::{Deserialize, Serialize};

/// A workflow's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Its steps run (or will, once the head is back).
    Running,
    /// Its root step returned; its output is logged.
    Successful,
    /// A step failed with an application error (or out of retries);
    /// resumable from that step.
    Failed,
    /// Stopped by a system failure (the head stopped, the module could
    /// not be loaded); resumable.
    Resumable,
    /// Cancelled; not resumable.
    Canceled,
}

impl Status {
    /// Its name as the API and CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Successful => "SUCCESSFUL",
            Status::Failed => "FAILED",
            Status::Resumable => "RESUMABLE",
            Status::Canceled => "CANCELED",
        }
    }

    /// Parses a name (case-insensitive).
    pub fn parse(name: &str) -> Option<Status> {
        [
            Status::Running,
            Status::Successful,
            Status::Failed,
            Status::Resumable,
            Status::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether `resume` may start it again.
    pub fn resumable(self) -> bool {
        matches!(self, Status::Failed | Status::Resumable)
    }
}

/// Who started a workflow: a head that resumes it makes its grant again
/// from these (and the policies then in force).
pub type Starter = crate::serve::Deployer;

/// A workflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkflowRecord {
    /// Its tenant.
    pub tenant: String,
    /// Its id, unique in the tenant.
    pub id: String,
    /// The namespace its steps run in.
    pub namespace: String,
    /// The module it started with ("sha256:<hex>"); resumes run the same.
    pub module: String,
    /// Its root step (an encoded `StepNode`, named).
    #[serde(with = "serde_bytes_compat")]
    pub root: Vec<u8>,
    /// What it was started from (`factorial`, `pipeline.yaml`).
    pub entry: String,
    /// Its status.
    pub status: Status,
    /// Why it failed or stopped.
    #[serde(default)]
    pub error: Option<String>,
    /// The digest of its output (when successful).
    #[serde(default)]
    pub output: Option<String>,
    /// Who started it.
    pub starter: Starter,
    /// The schedule that started it, if one did.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Unix ms: created, last changed, ended.
    pub created_ms: u64,
    /// See `created_ms`.
    pub updated_ms: u64,
    /// See `created_ms`.
    #[serde(default)]
    pub ended_ms: Option<u64>,
    /// How many times it started (1 + resumes).
    pub runs: u32,
    /// The next number for a step name the host derives (`mul#7`).
    pub next_step: u64,
}

/// A step's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepStatus {
    /// Running (or was, when the head stopped).
    Running,
    /// Returned a continuation, which runs; `continuation` holds it.
    Continued,
    /// Its output is logged.
    Done,
    /// Failed for good.
    Failed,
}

impl StepStatus {
    /// Its name as the API and CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "RUNNING",
            StepStatus::Continued => "CONTINUED",
            StepStatus::Done => "SUCCESSFUL",
            StepStatus::Failed => "FAILED",
        }
    }
}

/// A step of a workflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    /// Its name (its id in the workflow).
    pub name: String,
    /// Its function, or `sleep` / `event`.
    pub function: String,
    /// The digest of its node (so one name cannot stand for two steps).
    pub node: String,
    /// Its state.
    pub status: StepStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The digests of its resolved arguments, in order.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The digest of its output.
    #[serde(default)]
    pub output: Option<String>,
    /// The continuation it returned (an encoded, named `StepNode`).
    #[serde(default, with = "opt_bytes_compat")]
    pub continuation: Option<Vec<u8>>,
    /// A timer's deadline (Unix ms), logged when it first started.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// The last error (kind: message).
    #[serde(default)]
    pub error: Option<String>,
    /// Unix ms: first started, ended.
    pub started_ms: u64,
    /// See `started_ms`.
    #[serde(default)]
    pub ended_ms: Option<u64>,
}

/// A cron schedule that starts a workflow at each firing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// Its tenant.
    pub tenant: String,
    /// Its name, unique in the tenant.
    pub name: String,
    /// The cron expression (5 fields, UTC).
    pub cron: String,
    /// The namespace its workflows run in.
    pub namespace: String,
    /// The module ("sha256:<hex>").
    pub module: String,
    /// The entry task.
    pub entry: String,
    /// Its arguments, each one MessagePack value.
    pub args: Vec<serde_bytes_compat::Buf>,
    /// What to do with firings missed while the head was down.
    pub missed: MissedRuns,
    /// The last firing started (Unix ms), if any.
    #[serde(default)]
    pub last_fired_ms: Option<u64>,
    /// Who created it.
    pub starter: Starter,
    /// When (Unix ms).
    pub created_ms: u64,
}

/// What a schedule does with firings missed while the head was down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissedRuns {
    /// Starts one workflow for the latest missed firing (the default).
    #[default]
    RunLatest,
    /// Starts one workflow for every missed firing (at most 100).
    RunAll,
    /// Starts none; waits for the next firing.
    Skip,
}

/// The content address of a value: the hex SHA-256 of its bytes.
pub fn digest(value: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(value))
}

/// Byte vectors as MessagePack `bin`.
pub mod serde_bytes_compat {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// A byte vector that is a `bin`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Buf(pub Vec<u8>);

    impl Serialize for Buf {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Buf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize(d).map(Buf)
        }
    }

    /// See the module.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// See the module.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// `Option<Vec<u8>>` as MessagePack `bin` or nil.
mod opt_bytes_compat {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<super::serde_bytes_compat::Buf>::deserialize(d).map(|b| b.map(|b| b.0))
    }
}
