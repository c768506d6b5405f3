//! What the head remembers of jobs, and the bounds on it.
//!
//! A running job is a `JobMeta` in the head's job table. When it
//! ends (and the head keeps an archive), its record ([`JobInfo`]) and its details ([`JobDetails`]: the
//! result as JSON text and the tail of its log) are written to
//! `head.redb`, the head forgets its outcome, and only the record stays in
//! memory: an ended job costs the head a few hundred bytes however much
//! it returned or logged. Its whole log is the file `<state>/logs/<id>.log`
//! (see `cluster::job::JobLog::with_file`), bounded per job.
//!
//! Every part of a record a client or guest chooses is bounded: arguments
//! (`api::MAX_ARGS_JSON_BYTES`), the result ([`MAX_RESULT_JSON_BYTES`]), error
//! messages ([`MAX_ERROR_MESSAGE_BYTES`]), the log tail
//! (`cluster::job::MAX_LOG_BYTES`).

use prism_proto::v1::JobInfo;
use serde::{Deserialize, Serialize};

/// Largest result the API returns or stores, as JSON text (4 MiB). A
/// larger result is refused with `RESOURCE_EXHAUSTED` when asked for;
/// the job itself still succeeded.
pub const MAX_RESULT_JSON_BYTES: usize = 4 << 20;

/// Longest error message kept in a job's record (16 KiB); the rest is
/// cut.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 16 << 10;

/// A job's record as `head.redb` keeps it: written at submission and
/// again when the job ends, so a restarted head can still answer for it.
/// Records written before details were kept apart carry them inline;
/// they are moved out when the head starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredJob {
    pub(crate) info: JobInfo,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) value_json: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) logs: Vec<(String, String, String)>,
    /// Bytes the ended job keeps on the head's disk (details and log
    /// file), counted against its tenant's history (0: not known yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) disk_bytes: u64,
    /// The order in which jobs ended, across runs of the head (0: not
    /// ended, or ended before the order was kept). Milliseconds cannot
    /// tell two jobs that ended in the same one apart.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) end_order: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an ended job left: its result as JSON (empty if it failed, or
/// `too_large` if it did not fit [`MAX_RESULT_JSON_BYTES`]) and the tail
/// of its log, (function, source, text).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct JobDetails {
    pub(crate) value_json: String,
    #[serde(default)]
    pub(crate) too_large: bool,
    pub(crate) logs: Vec<(String, String, String)>,
}

impl JobDetails {
    /// The value as the API returns it (`None`: larger than
    /// [`MAX_RESULT_JSON_BYTES`]).
    pub(crate) fn value(&self) -> Option<String> {
        (!self.too_large).then(|| self.value_json.clone())
    }
}

/// A driver's result that is not MessagePack.
#[derive(Debug, thiserror::Error)]
#[error("the result is not MessagePack: {0}")]
pub(crate) struct NotMessagePack(String);

/// A driver's MessagePack result as JSON text, within
/// [`MAX_RESULT_JSON_BYTES`] (`Ok(None)`: too large).
pub(crate) fn result_json(bytes: &[u8]) -> Result<Option<String>, NotMessagePack> {
    match crate::values::msgpack_to_json_text(bytes, MAX_RESULT_JSON_BYTES) {
        Ok(text) => Ok(Some(text)),
        Err(crate::values::ValueError::TooLarge { .. }) => Ok(None),
        Err(e) => Err(NotMessagePack(e.to_string())),
    }
}

pub(crate) use crate::cluster::job::cut;

#[cfg(test)]
mod tests {
    use super::*;

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
            end_order: 0,
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
