//! Placement groups: bundles of resources reserved together on one or
//! several nodes, all or none.
//!
//! [`PlacementGroups`] plans where each bundle goes ([`plan`]: PACK,
//! SPREAD, STRICT_PACK, STRICT_SPREAD), reserves every bundle on its node
//! ([`BundleHosts::reserve`], which takes the resources out of that
//! node's scheduler), and if any node refuses, releases what it reserved
//! and tries again until room appears or 10 s pass. A group no set of
//! nodes could ever hold fails at once. A group ends when it is removed
//! or when the job that created it ends.

use crate::ids::OwnerId;
use crate::runtime::BoxFuture;
use crate::scheduler::ReserveError;
use crate::scheduler::resources::{ResourceError, ResourceSet, to_milli};
use crate::sync::MutexExt;
use prism_abi::{ErrorKind, PlacementGroupInfo, PlacementGroupSpec, PlacementStrategy, WireError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long creation waits for room held by running work (10 s).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// One node as placement sees it.
#[derive(Clone, Debug)]
pub struct HostView {
    /// Its id.
    pub node_id: String,
    /// What it offers.
    pub total: ResourceSet,
    /// What is free now.
    pub available: ResourceSet,
}

/// The nodes bundles can be reserved on.
pub trait BundleHosts: Send + Sync + 'static {
    /// The live nodes.
    fn hosts(&self) -> Vec<HostView>;
    /// Reserves `bundles` (index, resources) of `group` on `node_id`, all
    /// or none.
    fn reserve(
        &self,
        node_id: &str,
        group: &str,
        bundles: Vec<(u32, ResourceSet)>,
    ) -> BoxFuture<'static, Result<(), ReserveError>>;
    /// Frees `group`'s bundles on `node_id`.
    fn release(&self, node_id: &str, group: &str);
}

/// What guests ask of placement groups (the head's [`PlacementGroups`],
/// or on a worker, the head over the network).
pub trait PlacementService: Send + Sync + 'static {
    /// Creates a group for job `owner` of `tenant`; its id starts with
    /// `<tenant>.` ([`group_tenant`]).
    fn create(
        &self,
        owner: OwnerId,
        tenant: &crate::security::tenants::TenantId,
        spec: PlacementGroupSpec,
    ) -> BoxFuture<'static, Result<PlacementGroupInfo, WireError>>;
    /// Removes a group (harmless if it is gone).
    fn remove(&self, group: &str);
    /// Removes every group `owner` created (its job ended).
    fn remove_owned(&self, owner: OwnerId);
}

/// The tenant whose job created placement group `group`.
pub fn group_tenant(group: &str) -> Option<&str> {
    group.split_once('.').map(|(tenant, _)| tenant)
}

/// A bundle's resources from its spec: `CPU`, `memory` (bytes), custom.
pub fn bundle_resources(
    bundle: &std::collections::BTreeMap<String, f64>,
) -> Result<ResourceSet, ResourceError> {
    let mut set = ResourceSet::default();
    for (name, amount) in bundle {
        match name.as_str() {
            "CPU" => set.cpu_milli = to_milli(*amount)?,
            "memory" => {
                if !amount.is_finite() || *amount < 0.0 {
                    return Err(ResourceError::BadMemory(*amount));
                }
                set.memory = *amount as u64;
            }
            name if name == prism_abi::gpu::GPU_RESOURCE => {
                return Err(ResourceError::GpuInBundle);
            }
            name => {
                let milli = to_milli(*amount)?;
                if milli > 0 {
                    set.custom.insert(name.to_string(), milli);
                }
            }
        }
    }
    if set == ResourceSet::default() {
        return Err(ResourceError::EmptyBundle);
    }
    Ok(set)
}

/// Which host each bundle goes to, if `capacity` of the hosts allows it.
pub fn plan(
    strategy: PlacementStrategy,
    bundles: &[ResourceSet],
    capacity: &[ResourceSet],
) -> Option<Vec<usize>> {
    let mut left: Vec<ResourceSet> = capacity.to_vec();
    let mut used = vec![0usize; capacity.len()];
    let sum = bundles.iter().fold(ResourceSet::default(), |mut acc, b| {
        acc.give(b);
        acc
    });
    let one_host = left.iter().position(|c| c.fits(&sum));
    match strategy {
        PlacementStrategy::StrictPack => {
            let host = one_host?;
            return Some(vec![host; bundles.len()]);
        }
        PlacementStrategy::Pack => {
            if let Some(host) = one_host {
                return Some(vec![host; bundles.len()]);
            }
        }
        PlacementStrategy::StrictSpread if bundles.len() > capacity.len() => return None,
        _ => {}
    }
    // Largest bundles first (by CPU, then memory), each where it fits
    // best: a greedy plan that rarely misses one that exists.
    let mut order: Vec<usize> = (0..bundles.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((bundles[i].cpu_milli, bundles[i].memory)));
    let mut out = vec![0usize; bundles.len()];
    for i in order {
        let bundle = &bundles[i];
        let fitting = (0..left.len()).filter(|&h| left[h].fits(bundle));
        let host = match strategy {
            // Fill the most used host first.
            PlacementStrategy::Pack | PlacementStrategy::StrictPack => {
                fitting.max_by_key(|&h| (used[h], std::cmp::Reverse(h)))
            }
            PlacementStrategy::Spread => fitting.min_by_key(|&h| (used[h], h)),
            // The unused host with the least room that fits.
            PlacementStrategy::StrictSpread => fitting
                .filter(|&h| used[h] == 0)
                .min_by_key(|&h| (left[h].cpu_milli, left[h].memory, h)),
        }?;
        left[host].take(bundle);
        used[host] += 1;
        out[i] = host;
    }
    Some(out)
}

struct Group {
    owner: OwnerId,
    nodes: Vec<String>,
}

/// The cluster's placement groups.
pub struct PlacementGroups {
    hosts: Arc<dyn BundleHosts>,
    groups: Mutex<HashMap<String, Group>>,
    /// Owners whose groups were removed (their job or actor ended): a
    /// creation that finishes after that is undone at once.
    ended: Mutex<std::collections::HashSet<OwnerId>>,
    timeout: Duration,
    /// Where live groups are recorded (the head's `head.redb`), so that a
    /// restarted head can free what they held.
    store: std::sync::OnceLock<Arc<dyn GroupRecords>>,
}

/// A durable record of live placement groups.
pub trait GroupRecords: Send + Sync + 'static {
    /// A group was created on `nodes`.
    fn created(&self, id: &str, nodes: &[String]);
    /// A group was removed.
    fn removed(&self, id: &str);
}

impl PlacementGroups {
    /// Groups reserved on `hosts`.
    pub fn new(hosts: Arc<dyn BundleHosts>) -> Arc<Self> {
        Self::with_timeout(hosts, CREATE_TIMEOUT)
    }

    /// Groups reserved on `hosts`, creation waiting at most `timeout`.
    pub fn with_timeout(hosts: Arc<dyn BundleHosts>, timeout: Duration) -> Arc<Self> {
        Arc::new(PlacementGroups {
            hosts,
            groups: Mutex::new(HashMap::new()),
            ended: Mutex::new(Default::default()),
            timeout,
            store: std::sync::OnceLock::new(),
        })
    }

    /// Records live groups in `records` from now on.
    pub fn record_in(&self, records: Arc<dyn GroupRecords>) {
        let _ = self.store.set(records);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.locked()
    }

    async fn create_group(
        self: Arc<Self>,
        owner: OwnerId,
        tenant: String,
        spec: PlacementGroupSpec,
    ) -> Result<PlacementGroupInfo, WireError> {
        let invalid = |m: String| WireError::new(ErrorKind::InvalidArgument, m);
        if spec.bundles.is_empty() {
            return Err(invalid(
                "a placement group needs at least one bundle".into(),
            ));
        }
        let bundles = spec
            .bundles
            .iter()
            .enumerate()
            .map(|(i, b)| bundle_resources(b).map_err(|e| invalid(format!("bundle {i}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if crate::security::tenants::check_name("tenant", &tenant).is_err() {
            return Err(invalid(format!("bad tenant {tenant:?}")));
        }
        let id = format!("{tenant}.{}", crate::ids::ObjectId::random());
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let hosts = self.hosts.hosts();
            let totals: Vec<ResourceSet> = hosts.iter().map(|h| h.total.clone()).collect();
            if plan(spec.strategy, &bundles, &totals).is_none() {
                return Err(WireError::new(
                    ErrorKind::Unschedulable,
                    format!(
                        "no set of nodes can hold these {} bundles with strategy {:?}",
                        bundles.len(),
                        spec.strategy
                    ),
                ));
            }
            let free: Vec<ResourceSet> = hosts.iter().map(|h| h.available.clone()).collect();
            if let Some(assignment) = plan(spec.strategy, &bundles, &free)
                && self.reserve_all(&id, &hosts, &bundles, &assignment).await
            {
                let nodes: Vec<String> = assignment
                    .iter()
                    .map(|&h| hosts[h].node_id.clone())
                    .collect();
                self.lock().insert(
                    id.clone(),
                    Group {
                        owner,
                        nodes: nodes.clone(),
                    },
                );
                tracing::info!(group = %id, ?nodes, "placement group created");
                if let Some(store) = self.store.get() {
                    store.created(&id, &nodes);
                }
                if self.ended.locked().contains(&owner) {
                    self.remove(&id);
                    return Err(WireError::new(
                        ErrorKind::Cancelled,
                        "the placement group's job ended while it was created",
                    ));
                }
                return Ok(PlacementGroupInfo { id, nodes });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(WireError::new(
                    ErrorKind::Unschedulable,
                    format!(
                        "the {} bundles could not all be reserved within {:?}: the resources stayed busy",
                        bundles.len(),
                        self.timeout
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reserves every node's share; on any refusal releases the others.
    async fn reserve_all(
        &self,
        id: &str,
        hosts: &[HostView],
        bundles: &[ResourceSet],
        assignment: &[usize],
    ) -> bool {
        let mut by_host: HashMap<usize, Vec<(u32, ResourceSet)>> = HashMap::new();
        for (index, &host) in assignment.iter().enumerate() {
            by_host
                .entry(host)
                .or_default()
                .push((index as u32, bundles[index].clone()));
        }
        let mut reserved = Vec::new();
        for (host, share) in by_host {
            let node = &hosts[host].node_id;
            match self.hosts.reserve(node, id, share).await {
                Ok(()) => reserved.push(node.clone()),
                Err(why) => {
                    tracing::debug!(group = %id, %node, "bundle reservation refused: {why}");
                    for node in reserved {
                        self.hosts.release(&node, id);
                    }
                    return false;
                }
            }
        }
        true
    }
}

impl PlacementService for Arc<PlacementGroups> {
    fn create(
        &self,
        owner: OwnerId,
        tenant: &crate::security::tenants::TenantId,
        spec: PlacementGroupSpec,
    ) -> BoxFuture<'static, Result<PlacementGroupInfo, WireError>> {
        // On its own task: a guest cancelled while it waits must not leave
        // half a group reserved.
        let creation = tokio::spawn(self.clone().create_group(owner, tenant.to_string(), spec));
        Box::pin(async move {
            creation.await.unwrap_or_else(|e| {
                Err(WireError::new(
                    ErrorKind::System,
                    format!("placement group creation failed: {e}"),
                ))
            })
        })
    }

    fn remove(&self, group: &str) {
        let Some(removed) = self.lock().remove(group) else {
            return;
        };
        if let Some(store) = self.store.get() {
            store.removed(group);
        }
        let mut nodes = removed.nodes;
        nodes.sort();
        nodes.dedup();
        for node in nodes {
            self.hosts.release(&node, group);
        }
    }

    fn remove_owned(&self, owner: OwnerId) {
        {
            let mut ended = self.ended.locked();
            if ended.len() >= 100_000 {
                ended.clear();
            }
            ended.insert(owner);
        }
        let owned: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, g)| g.owner == owner)
            .map(|(id, _)| id.clone())
            .collect();
        for group in owned {
            self.remove(&group);
        }
    }
}

/// The one node of an embedded cluster, as a bundle host.
pub struct LocalHosts {
    node: std::sync::Weak<super::Node>,
    id: String,
}

impl LocalHosts {
    /// `node`, named `id`.
    pub fn new(node: std::sync::Weak<super::Node>, id: &str) -> Arc<Self> {
        Arc::new(LocalHosts {
            node,
            id: id.to_string(),
        })
    }
}

impl BundleHosts for LocalHosts {
    fn hosts(&self) -> Vec<HostView> {
        self.node
            .upgrade()
            .map(|node| {
                vec![HostView {
                    node_id: self.id.clone(),
                    total: node.scheduler().total(),
                    available: node.scheduler().available(),
                }]
            })
            .unwrap_or_default()
    }

    fn reserve(
        &self,
        _node_id: &str,
        group: &str,
        bundles: Vec<(u32, ResourceSet)>,
    ) -> BoxFuture<'static, Result<(), ReserveError>> {
        let reserved = match self.node.upgrade() {
            Some(node) => node.scheduler().reserve_bundles(group, &bundles),
            None => Err(ReserveError::NodeGone("the node stopped".into())),
        };
        Box::pin(async move { reserved })
    }

    fn release(&self, _node_id: &str, group: &str) {
        if let Some(node) = self.node.upgrade() {
            node.scheduler().release_bundles(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(n: u64) -> ResourceSet {
        ResourceSet {
            cpu_milli: n * 1000,
            ..Default::default()
        }
    }

    #[test]
    fn strategies_place_bundles_as_their_names_say() {
        let bundles = vec![cpus(1), cpus(1), cpus(1)];
        let hosts = vec![cpus(4), cpus(2), cpus(2)];
        assert_eq!(
            plan(PlacementStrategy::StrictPack, &bundles, &hosts),
            Some(vec![0, 0, 0])
        );
        assert_eq!(
            plan(PlacementStrategy::Pack, &bundles, &hosts),
            Some(vec![0, 0, 0])
        );
        // Each on its own host, the roomiest kept for last.
        assert_eq!(
            plan(PlacementStrategy::StrictSpread, &bundles, &hosts),
            Some(vec![1, 2, 0])
        );
        assert_eq!(
            plan(PlacementStrategy::Spread, &bundles, &hosts),
            Some(vec![0, 1, 2])
        );
        // Four bundles on three hosts: SPREAD reuses, STRICT_SPREAD cannot.
        let four = vec![cpus(1); 4];
        assert_eq!(plan(PlacementStrategy::StrictSpread, &four, &hosts), None);
        assert_eq!(
            plan(PlacementStrategy::Spread, &four, &hosts),
            Some(vec![0, 1, 2, 0])
        );
        // Too big for one host: PACK splits, STRICT_PACK cannot.
        let big = vec![cpus(3), cpus(2)];
        assert_eq!(plan(PlacementStrategy::StrictPack, &big, &hosts), None);
        assert_eq!(
            plan(PlacementStrategy::Pack, &big, &hosts),
            Some(vec![0, 1])
        );
        // Nothing fits at all.
        assert_eq!(plan(PlacementStrategy::Pack, &[cpus(5)], &hosts), None);
        // A small bundle must not take the only host a large one fits.
        assert_eq!(
            plan(
                PlacementStrategy::StrictSpread,
                &[cpus(1), cpus(2)],
                &[cpus(2), cpus(1)]
            ),
            Some(vec![1, 0])
        );
    }

    /// Two hosts of 2 CPUs; `refuse` refuses every reservation.
    struct FakeHosts {
        refuse: String,
        reserved: Mutex<Vec<(String, String)>>,
    }

    impl BundleHosts for FakeHosts {
        fn hosts(&self) -> Vec<HostView> {
            ["a", "b"]
                .iter()
                .map(|id| HostView {
                    node_id: id.to_string(),
                    total: cpus(2),
                    available: cpus(2),
                })
                .collect()
        }
        fn reserve(
            &self,
            node_id: &str,
            group: &str,
            _: Vec<(u32, ResourceSet)>,
        ) -> BoxFuture<'static, Result<(), ReserveError>> {
            let result = if node_id == self.refuse {
                Err(ReserveError::Refused("busy".to_string()))
            } else {
                self.reserved
                    .lock()
                    .unwrap()
                    .push((node_id.to_string(), group.to_string()));
                Ok(())
            };
            Box::pin(async move { result })
        }
        fn release(&self, node_id: &str, group: &str) {
            self.reserved
                .lock()
                .unwrap()
                .retain(|(n, g)| !(n == node_id && g == group));
        }
    }

    #[tokio::test]
    async fn a_group_is_reserved_whole_or_not_at_all() {
        let spec = PlacementGroupSpec {
            bundles: vec![[("CPU".to_string(), 1.0)].into(); 2],
            strategy: PlacementStrategy::StrictSpread,
        };
        let fine = Arc::new(FakeHosts {
            refuse: String::new(),
            reserved: Mutex::new(Vec::new()),
        });
        let groups = PlacementGroups::new(fine.clone());
        let info = groups
            .create(
                OwnerId::random(),
                &crate::security::tenants::TenantId::new("default"),
                spec.clone(),
            )
            .await
            .unwrap();
        assert_eq!(info.nodes, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(fine.reserved.lock().unwrap().len(), 2);
        groups.remove(&info.id);
        assert!(fine.reserved.lock().unwrap().is_empty());

        // One node keeps refusing: whatever the other reserved is released
        // each time, and creation gives up after the timeout.
        let busy = Arc::new(FakeHosts {
            refuse: "b".into(),
            reserved: Mutex::new(Vec::new()),
        });
        let groups = PlacementGroups::with_timeout(busy.clone(), Duration::from_millis(300));
        let error = groups
            .create(
                OwnerId::random(),
                &crate::security::tenants::TenantId::new("default"),
                spec,
            )
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unschedulable);
        assert!(busy.reserved.lock().unwrap().is_empty());
    }

    #[test]
    fn bundle_specs_are_checked() {
        let mut b = std::collections::BTreeMap::new();
        b.insert("CPU".to_string(), 1.5);
        b.insert("memory".to_string(), 1024.0);
        b.insert("ssd".to_string(), 1.0);
        let set = bundle_resources(&b).unwrap();
        assert_eq!(set.cpu_milli, 1500);
        assert_eq!(set.memory, 1024);
        assert_eq!(set.custom.get("ssd"), Some(&1000));
        let mut gpu = std::collections::BTreeMap::new();
        gpu.insert("GPU".to_string(), 1.0);
        assert!(bundle_resources(&gpu).is_err());
        assert!(bundle_resources(&Default::default()).is_err());
        let mut negative = std::collections::BTreeMap::new();
        negative.insert("CPU".to_string(), -1.0);
        assert!(bundle_resources(&negative).is_err());
    }
}
