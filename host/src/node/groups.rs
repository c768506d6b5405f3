//! Placement groups made by guests on this node, held against their
//! tenants until removed or until the job that made them ends.

use super::Node;
use crate::ids::OwnerId;
use crate::scheduler::accounts::TenantAccount;
use crate::scheduler::resources::ResourceSet;
use crate::sync::MutexExt;
use std::sync::Arc;

impl Node {
    /// Counts a placement group this node's guest made against its
    /// tenant until it is removed or its job ends.
    pub(super) fn hold_group(
        &self,
        group: String,
        owner: OwnerId,
        tenant: Arc<TenantAccount>,
        total: ResourceSet,
    ) {
        if self.job(owner).is_none() {
            // Its job ended while it was made; the group goes with it.
            tenant.unhold(&total);
            if let Some(placement) = self.placement() {
                placement.remove(&group);
            }
            return;
        }
        self.held_groups
            .locked()
            .insert(group, (owner, tenant, total));
    }

    /// A placement group was removed: its bundles no longer count.
    pub(super) fn release_group(&self, group: &str) {
        let held = self.held_groups.locked().remove(group);
        if let Some((_, tenant, total)) = held {
            tenant.unhold(&total);
        }
    }

    /// A job (or actor) ended: its placement groups no longer count.
    pub(super) fn release_groups_of(&self, owner: OwnerId) {
        let released: Vec<(String, Arc<TenantAccount>, ResourceSet)> = {
            let mut held = self.held_groups.locked();
            let groups: Vec<String> = held
                .iter()
                .filter(|(_, (o, _, _))| *o == owner)
                .map(|(g, _)| g.clone())
                .collect();
            groups
                .into_iter()
                .filter_map(|g| held.remove(&g).map(|(_, t, r)| (g, t, r)))
                .collect()
        };
        for (group, tenant, total) in released {
            tenant.unhold(&total);
            // Gone with its owner (a worker leaves removing a job's groups
            // to the head, which does not know an actor's).
            if let Some(placement) = self.placement() {
                placement.remove(&group);
            }
        }
    }
}

/// A placement group counted against its tenant: the job that made it,
/// the tenant's account, and the total of its bundles.
pub(super) type HeldGroup = (OwnerId, Arc<TenantAccount>, ResourceSet);
