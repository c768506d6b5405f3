//! A job's grant on the wire: [`JobGrant`] ⇄ `pb::JobGrant`, in one place.
//!
//! Every task attempt and actor creation placed on another node carries
//! its job's grant, so every node enforces the same one. The receiving
//! node checks what a grant could carry that the head would never issue
//! (a missing grant, a NaN quota or weight) and refuses the call.

use crate::security::tenants::{Capabilities, GuestPermissions, JobGrant, Quotas, TenantId};
use prism_proto::v1 as pb;
use std::sync::Arc;
use tonic::Status;

/// `grant` as it crosses the wire.
pub fn grant_to_proto(grant: &JobGrant) -> pb::JobGrant {
    pb::JobGrant {
        tenant: grant.tenant.to_string(),
        weight: grant.weight,
        quotas: Some(quotas_to_proto(&grant.quotas)),
        capabilities: grant.capabilities.as_ref().map(capabilities_to_proto),
        permissions: Some(permissions_to_proto(&grant.permissions)),
        namespaces: grant
            .namespaces
            .iter()
            .map(|(ns, p)| (ns.clone(), permissions_to_proto(p)))
            .collect(),
        quota_revision: grant.quota_revision,
    }
}

/// The grant a call arrived with; `INVALID_ARGUMENT` if it is missing or
/// could not have come from a head.
pub fn grant_from_proto(grant: Option<pb::JobGrant>) -> Result<Arc<JobGrant>, Status> {
    let grant = grant.ok_or_else(|| Status::invalid_argument("the call carries no grant"))?;
    if !(grant.weight.is_finite() && grant.weight > 0.0) {
        return Err(Status::invalid_argument(format!(
            "grant: weight {} is not a positive number",
            grant.weight
        )));
    }
    let quotas = quotas_from_proto(grant.quotas.unwrap_or_default());
    quotas
        .check()
        .map_err(|e| Status::invalid_argument(format!("grant: {e}")))?;
    Ok(Arc::new(JobGrant {
        tenant: TenantId::new(&grant.tenant),
        weight: grant.weight,
        quotas,
        capabilities: grant.capabilities.map(capabilities_from_proto),
        permissions: permissions_from_proto(grant.permissions.unwrap_or_default()),
        namespaces: grant
            .namespaces
            .into_iter()
            .map(|(ns, p)| (ns, permissions_from_proto(p)))
            .collect(),
        quota_revision: grant.quota_revision,
    }))
}

fn quotas_to_proto(q: &Quotas) -> pb::GrantQuotas {
    pb::GrantQuotas {
        cpus: q.cpus,
        memory: q.memory,
        gpus: q.gpus,
        object_store_bytes: q.object_store_bytes,
        actors: q.actors,
        queued_tasks: q.queued_tasks,
        jobs: q.jobs,
    }
}

fn quotas_from_proto(q: pb::GrantQuotas) -> Quotas {
    Quotas {
        cpus: q.cpus,
        memory: q.memory,
        gpus: q.gpus,
        object_store_bytes: q.object_store_bytes,
        actors: q.actors,
        queued_tasks: q.queued_tasks,
        jobs: q.jobs,
        // Enforced by the head's ingress from the tenancy records; work
        // on nodes never needs it.
        requests_per_second: None,
    }
}

fn capabilities_to_proto(c: &Capabilities) -> pb::GrantCapabilities {
    pb::GrantCapabilities {
        max_task_memory: c.max_task_memory,
        max_task_time_ms: c.max_task_time_ms,
        env: c.env,
        clock_resolution_us: c.clock_resolution_us,
        data_dir: c
            .data_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned()),
    }
}

fn capabilities_from_proto(c: pb::GrantCapabilities) -> Capabilities {
    Capabilities {
        max_task_memory: c.max_task_memory,
        max_task_time_ms: c.max_task_time_ms,
        env: c.env,
        clock_resolution_us: c.clock_resolution_us,
        data_dir: c.data_dir.map(Into::into),
    }
}

fn permissions_to_proto(p: &GuestPermissions) -> pb::GuestPermissions {
    pb::GuestPermissions {
        call_task: p.call_task,
        create_actor: p.create_actor,
        call_actor: p.call_actor,
        put_object: p.put_object,
        get_object: p.get_object,
        use_gpu: p.use_gpu,
        read_directory: p.read_directory,
    }
}

fn permissions_from_proto(p: pb::GuestPermissions) -> GuestPermissions {
    GuestPermissions {
        call_task: p.call_task,
        create_actor: p.create_actor,
        call_actor: p.call_actor,
        put_object: p.put_object,
        get_object: p.get_object,
        use_gpu: p.use_gpu,
        read_directory: p.read_directory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn full_grant() -> JobGrant {
        let some = GuestPermissions {
            call_task: true,
            create_actor: false,
            call_actor: true,
            put_object: false,
            get_object: true,
            use_gpu: false,
            read_directory: true,
        };
        JobGrant {
            tenant: TenantId::new("acme"),
            weight: 2.5,
            quotas: Quotas {
                cpus: Some(1.5),
                memory: Some(1 << 30),
                gpus: Some(0.25),
                object_store_bytes: Some(7),
                actors: Some(8),
                queued_tasks: None,
                jobs: Some(3),
                requests_per_second: None,
            },
            capabilities: Some(Capabilities {
                max_task_memory: Some(1 << 20),
                max_task_time_ms: None,
                env: true,
                clock_resolution_us: 1000,
                data_dir: Some("/srv/acme".into()),
            }),
            permissions: some,
            namespaces: [("ml".to_string(), GuestPermissions::NONE)].into(),
            quota_revision: 42,
        }
    }

    #[test]
    fn a_grant_crosses_the_wire_unchanged() {
        for grant in [full_grant(), (*JobGrant::local()).clone()] {
            let bytes = grant_to_proto(&grant).encode_to_vec();
            let decoded = pb::JobGrant::decode(bytes.as_slice()).expect("decodes");
            let back = grant_from_proto(Some(decoded)).expect("a head's grant is accepted");
            assert_eq!(*back, grant);
        }
    }

    #[test]
    fn a_grant_no_head_would_issue_is_refused() {
        assert!(grant_from_proto(None).is_err());
        let mut nan_weight = grant_to_proto(&full_grant());
        nan_weight.weight = f64::NAN;
        assert!(grant_from_proto(Some(nan_weight)).is_err());
        let mut negative_quota = grant_to_proto(&full_grant());
        if let Some(q) = negative_quota.quotas.as_mut() {
            q.cpus = Some(-1.0);
        }
        let refused = grant_from_proto(Some(negative_quota)).expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
}
