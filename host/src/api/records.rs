//! What the head's API remembers of jobs, and the bounds on it.
//!
//! A running job is a [`JobMeta`] beside the head's job table. When it
//! ends, its record ([`JobInfo`]) and its details ([`JobDetails`]: the
//! result as JSON text and the tail of its log) are written to
//! `head.redb`, the head forgets its outcome, and only the record stays in
//! memory: an ended job costs the head a few hundred bytes however much
//! it returned or logged. Its whole log is the file `<state>/logs/<id>.log`
//! (see `cluster::job::JobLog::with_file`), bounded per job.
//!
//! Every part of a record a client or guest chooses is bounded: arguments
//! ([`MAX_ARGS_JSON_BYTES`]), the result ([`MAX_RESULT_JSON_BYTES`]), error
//! messages ([`MAX_ERROR_MESSAGE_BYTES`]), the log tail
//! (`cluster::job::MAX_LOG_BYTES`).

use crate::ids::ModuleHash;
use prism_proto::v1::JobInfo;
use serde::{Deserialize, Serialize};
use tonic::Status;

/// Largest `args_json` a job submission or a named-actor call accepts
/// (1 MiB). Larger inputs belong in named objects.
pub const MAX_ARGS_JSON_BYTES: usize = 1 << 20;

/// Largest result the API returns or stores, as JSON text (4 MiB). A
/// larger result is refused with `RESOURCE_EXHAUSTED` when asked for;
/// the job itself still succeeded.
pub const MAX_RESULT_JSON_BYTES: usize = 4 << 20;

/// Longest error message kept in a job's record (16 KiB); the rest is
/// cut.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 16 << 10;

/// What the API remembers of a running job beyond the head's table.
pub(super) struct JobMeta {
    pub module: ModuleHash,
    pub entry: String,
    pub tenant: String,
    pub namespace: String,
    pub submitted_by: String,
    pub submitted_at_ms: i64,
    pub stop_requested: bool,
}

/// A job's record as `head.redb` keeps it: written at submission and
/// again when the job ends, so a restarted head can still answer for it.
/// Records written before details were kept apart carry them inline;
/// they are moved out when the head starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StoredJob {
    pub info: JobInfo,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value_json: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<(String, String, String)>,
    /// Bytes the ended job keeps on the head's disk (details and log
    /// file), counted against its tenant's history (0: not known yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disk_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an ended job left: its result as JSON (empty if it failed, or
/// `too_large` if it did not fit [`MAX_RESULT_JSON_BYTES`]) and the tail
/// of its log, (function, source, text).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct JobDetails {
    pub value_json: String,
    #[serde(default)]
    pub too_large: bool,
    pub logs: Vec<(String, String, String)>,
}

impl JobDetails {
    /// The value as the API returns it, or why it cannot.
    pub fn value(&self) -> Result<String, Status> {
        if self.too_large {
            return Err(too_large());
        }
        Ok(self.value_json.clone())
    }
}

/// The refusal of a result larger than [`MAX_RESULT_JSON_BYTES`].
pub(super) fn too_large() -> Status {
    Status::resource_exhausted(format!(
        "the job's result is larger than {MAX_RESULT_JSON_BYTES} bytes as JSON; \
         return large values through named objects"
    ))
}

/// A driver's MessagePack result as JSON text, within
/// [`MAX_RESULT_JSON_BYTES`] (`Ok(None)`: too large).
pub(super) fn result_json(bytes: &[u8]) -> Result<Option<String>, Status> {
    match crate::values::msgpack_to_json_text(bytes, MAX_RESULT_JSON_BYTES) {
        Ok(text) => Ok(Some(text)),
        Err(crate::values::ValueError::TooLarge { .. }) => Ok(None),
        Err(e) => Err(Status::internal(format!(
            "the result is not MessagePack: {e}"
        ))),
    }
}

pub(super) use crate::cluster::job::cut;

/// Arguments given as a JSON array (empty: none), at most
/// [`MAX_ARGS_JSON_BYTES`] of it.
pub(super) fn json_args(args_json: &str) -> Result<Vec<bytes::Bytes>, Status> {
    if args_json.len() > MAX_ARGS_JSON_BYTES {
        return Err(Status::invalid_argument(format!(
            "args_json is {} bytes; at most {MAX_ARGS_JSON_BYTES} are accepted \
             (pass large inputs as named objects)",
            args_json.len()
        )));
    }
    let text = if args_json.is_empty() {
        "[]"
    } else {
        args_json
    };
    crate::values::json_args(text).map_err(|e| Status::invalid_argument(format!("args_json: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_bounded_before_parsing() {
        let big = format!("[{}0]", "0,".repeat(MAX_ARGS_JSON_BYTES / 2));
        let err = json_args(&big).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("at most"), "{}", err.message());
        assert_eq!(json_args("").unwrap().len(), 0);
        assert_eq!(json_args("[1, 2]").unwrap().len(), 2);
    }

    #[test]
    fn large_results_are_marked_not_converted() {
        let mut nils = vec![0xdd, 0x01, 0x31, 0x2d, 0x00];
        nils.resize(nils.len() + 20_000_000, 0xc0);
        assert_eq!(result_json(&nils).unwrap(), None);
        assert_eq!(result_json(&[0x05]).unwrap().as_deref(), Some("5"));
        assert!(result_json(&[0xc1]).is_err());
    }

    #[test]
    fn old_records_with_inline_details_still_load() {
        let info = serde_json::to_value(JobInfo::default()).unwrap();
        let old = serde_json::json!({
            "info": info, "value_json": "5", "logs": [["f", "stdout", "hi"]]
        });
        let record: StoredJob = serde_json::from_value(old).unwrap();
        assert_eq!(record.value_json, "5");
        assert_eq!(record.logs.len(), 1);
        let new = serde_json::to_string(&StoredJob {
            info: record.info.clone(),
            value_json: String::new(),
            logs: Vec::new(),
            disk_bytes: 0,
        })
        .unwrap();
        assert!(!new.contains("logs"), "{new}");
    }

    #[test]
    fn messages_are_cut_on_a_character_boundary() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("ééé", 3), "é [4 bytes cut]");
    }
}
