//! What the API reads from and writes to its messages: JSON arguments in,
//! JSON results out, each bounded, and the head's failures as statuses.

use crate::head::{MAX_RESULT_JSON_BYTES, SubmitError};
use crate::meta::MetaError;
use tonic::Status;

/// Largest `args_json` a job submission or a named-actor call accepts
/// (1 MiB). Larger inputs belong in named objects.
pub const MAX_ARGS_JSON_BYTES: usize = 1 << 20;

/// The refusal of a result larger than [`MAX_RESULT_JSON_BYTES`].
pub(super) fn too_large() -> Status {
    Status::resource_exhausted(format!(
        "the job's result is larger than {MAX_RESULT_JSON_BYTES} bytes as JSON; \
         return large values through named objects"
    ))
}

/// A MessagePack value as JSON text, within [`MAX_RESULT_JSON_BYTES`].
pub(super) fn result_json(bytes: &[u8]) -> Result<String, Status> {
    crate::head::result_json(bytes)
        .map_err(|e| Status::internal(e.to_string()))?
        .ok_or_else(too_large)
}

/// Checks that `tenant` may run `module`: stored, and uploaded by the
/// tenant (a cluster-admin acting in another tenant may run what it
/// uploaded itself; the module is then that tenant's too).
pub(super) fn module_owned(
    api: &super::Api,
    claims: &crate::security::Claims,
    tenant: &crate::security::tenants::TenantId,
    module: crate::ids::ModuleHash,
) -> Result<(), Status> {
    let tenancy = api.access.tenancy();
    let key = format!("{module:?}");
    let owned = tenancy.has_module(tenant, &key)
        || (*tenant != claims.tenant && tenancy.has_module(&claims.tenant, &key));
    if !api.cluster.head().has_module(module) || !owned {
        return Err(Status::not_found(format!(
            "no module {module:?}; upload it first"
        )));
    }
    tenancy
        .add_module(tenant, &key)
        .map_err(super::tenancy_status)
}

/// A failure of `head.redb`.
pub(super) fn head_store(e: MetaError) -> Status {
    Status::internal(format!("head.redb: {e}"))
}

/// A refused submission.
pub(super) fn submit_status(e: SubmitError) -> Status {
    match e {
        SubmitError::TooManyJobs { .. } => Status::resource_exhausted(e.to_string()),
        SubmitError::Cluster(e) => Status::unavailable(e.to_string()),
    }
}

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
    fn results_too_large_or_not_messagepack_are_refused() {
        assert_eq!(result_json(&[0x05]).unwrap(), "5");
        assert_eq!(
            result_json(&[0xc1]).unwrap_err().code(),
            tonic::Code::Internal
        );
        let mut nils = vec![0xdd, 0x01, 0x31, 0x2d, 0x00];
        nils.resize(nils.len() + 20_000_000, 0xc0);
        assert_eq!(
            result_json(&nils).unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
    }
}
