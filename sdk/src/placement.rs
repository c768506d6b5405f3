//! Placement groups: bundles of resources reserved together, atomically,
//! on one or several nodes, for tasks that must run side by side (or
//! apart). Created with [`placement_group`]; a task runs in a bundle with
//! [`TaskOptions::placement_group`](crate::TaskOptions::placement_group).
//!
//! ```ignore
//! let pg = prism::placement_group(
//!     &[prism::Bundle::new().cpus(1.0), prism::Bundle::new().cpus(1.0)],
//!     prism::PlacementStrategy::StrictSpread,
//! )?;
//! let a = work::options().placement_group(&pg, 0).remote(1);
//! let b = work::options().placement_group(&pg, 1).remote(2);
//! ```

use crate::{Error, Result, sys};
pub use prism_abi::PlacementStrategy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The resources of one bundle, built with chained setters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bundle(BTreeMap<String, f64>);

impl Bundle {
    /// An empty bundle.
    pub fn new() -> Self {
        Self::default()
    }

    /// CPUs the bundle holds (fractional allowed).
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.0.insert("CPU".into(), cpus);
        self
    }

    /// Memory in bytes the bundle holds.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.0.insert("memory".into(), bytes as f64);
        self
    }

    /// An amount of a custom resource the nodes declare.
    pub fn resource(mut self, name: impl Into<String>, amount: f64) -> Self {
        self.0.insert(name.into(), amount);
        self
    }
}

/// A created placement group: its bundles are reserved on their nodes
/// until [`PlacementGroup::remove`] or the end of the creating job.
/// Serializable: pass it to tasks and actors like any value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementGroup {
    info: prism_abi::PlacementGroupInfo,
}

impl PlacementGroup {
    /// Its id: its tenant, a dot, and 32 hex digits.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The node holding each bundle, in bundle order.
    pub fn nodes(&self) -> &[String] {
        &self.info.nodes
    }

    /// How many bundles it has.
    pub fn bundle_count(&self) -> usize {
        self.info.nodes.len()
    }

    /// The wire reference to bundle `index` (an index past the end names
    /// no node; tasks using it fail `invalid_argument`).
    pub(crate) fn bundle(&self, index: u32) -> prism_abi::BundleRef {
        prism_abi::BundleRef {
            group: self.info.id.clone(),
            index,
            node_id: self
                .info
                .nodes
                .get(index as usize)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Frees the bundles. Tasks still queued for them fail; running ones
    /// finish. Removing twice is harmless.
    pub fn remove(&self) -> Result<()> {
        match sys::pg_remove(&self.info.id) {
            prism_abi::status::OK => Ok(()),
            code => Err(Error::from_status(code)),
        }
    }
}

/// Reserves `bundles` together, spread over nodes as `strategy` says:
/// either every bundle is reserved or none is. Waits (up to 10 s) for room
/// that running work will free; a group no set of nodes could ever hold
/// fails at once (`unschedulable`).
pub fn placement_group(bundles: &[Bundle], strategy: PlacementStrategy) -> Result<PlacementGroup> {
    let spec = prism_abi::PlacementGroupSpec {
        bundles: bundles.iter().map(|b| b.0.clone()).collect(),
        strategy,
    };
    let bytes = rmp_serde::to_vec_named(&spec).map_err(|e| Error::Serialization(e.to_string()))?;
    let mut len = 0u32;
    let code = sys::pg_create(&bytes, &mut len);
    match code {
        prism_abi::status::OK => {
            let staged = crate::take_staged(len);
            let info =
                rmp_serde::from_slice(&staged).map_err(|e| Error::Serialization(e.to_string()))?;
            Ok(PlacementGroup { info })
        }
        prism_abi::status::ERROR_OBJECT => {
            let staged = crate::take_staged(len);
            Err(prism_abi::WireError::decode(&staged)
                .map(Error::from)
                .unwrap_or_else(|e| Error::Serialization(e.to_string())))
        }
        code => Err(Error::from_status(code)),
    }
}
