//! Named objects: values that live in a namespace under a name until
//! deleted, across jobs, in one of two tiers.
//!
//! The memory tier is a map in the node (fast, lost on restart); the durable
//! tier is the `named_objects` table of the node's [`MetaStore`] (survives
//! restarts with the same data directory). A name lives in one tier at a
//! time: putting it in one removes it from the other.

use crate::meta::{MetaError, MetaStore};
use crate::sync::MutexExt;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a named object is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// In the node's memory.
    Memory,
    /// In the durable metadata store.
    Durable,
}

/// The named objects of one node.
pub struct NamedObjects {
    memory: Mutex<BTreeMap<(String, String), Bytes>>,
    meta: Arc<MetaStore>,
}

impl NamedObjects {
    /// Named objects whose durable tier lives in `meta`.
    pub fn new(meta: Arc<MetaStore>) -> Self {
        NamedObjects {
            memory: Mutex::new(BTreeMap::new()),
            meta,
        }
    }

    fn memory(&self) -> MutexGuard<'_, BTreeMap<(String, String), Bytes>> {
        self.memory.locked()
    }

    /// Stores `value` under (`ns`, `name`) in `tier`, replacing any value.
    pub fn put(&self, ns: &str, name: &str, value: Bytes, tier: Tier) -> Result<(), MetaError> {
        match tier {
            Tier::Memory => {
                self.meta.delete_named(ns, name)?;
                self.memory()
                    .insert((ns.to_string(), name.to_string()), value);
            }
            Tier::Durable => {
                self.meta.put_named(ns, name, &value)?;
                self.memory().remove(&(ns.to_string(), name.to_string()));
            }
        }
        Ok(())
    }

    /// The value under (`ns`, `name`), from whichever tier holds it.
    pub fn get(&self, ns: &str, name: &str) -> Result<Option<Bytes>, MetaError> {
        if let Some(v) = self.memory().get(&(ns.to_string(), name.to_string())) {
            return Ok(Some(v.clone()));
        }
        Ok(self.meta.get_named(ns, name)?.map(Bytes::from))
    }

    /// Deletes (`ns`, `name`) from both tiers; returns whether it existed.
    pub fn delete(&self, ns: &str, name: &str) -> Result<bool, MetaError> {
        let in_memory = self
            .memory()
            .remove(&(ns.to_string(), name.to_string()))
            .is_some();
        let durable = self.meta.delete_named(ns, name)?;
        Ok(in_memory || durable)
    }

    /// Deletes every named object (both tiers) and saved actor state in
    /// namespaces starting with `prefix` (a deleted tenant's).
    pub fn purge(&self, prefix: &str) -> Result<usize, MetaError> {
        let mut memory = self.memory();
        let before = memory.len();
        memory.retain(|(ns, _), _| !ns.starts_with(prefix));
        let in_memory = before - memory.len();
        drop(memory);
        Ok(in_memory + self.meta.purge(prefix)?)
    }

    /// Names in `ns` starting with `prefix`, from both tiers, sorted.
    pub fn list(&self, ns: &str, prefix: &str) -> Result<Vec<String>, MetaError> {
        let mut names = self.meta.list_named(ns, prefix)?;
        {
            let memory = self.memory();
            let start = (ns.to_string(), prefix.to_string());
            for ((key_ns, name), _) in memory.range(start..) {
                if key_ns != ns || !name.starts_with(prefix) {
                    break;
                }
                names.push(name.clone());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// Why a named-object operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum NamedError {
    /// This node's store (`meta.redb`) failed.
    #[error("{0}")]
    Store(String),
    /// The head, which keeps a cluster's named objects, failed or could
    /// not be reached.
    #[error("the head's named objects: {0}")]
    Head(String),
    /// The caller is not running a call (a warm instance between calls).
    #[error("{0}")]
    NoCall(&'static str),
}

impl From<MetaError> for NamedError {
    fn from(e: MetaError) -> Self {
        NamedError::Store(e.to_string())
    }
}

/// Where a node's guests keep named objects: the node itself (an embedded
/// cluster, the head's node), or the head (a worker node), so that every
/// node of a cluster sees the same names.
pub trait NamedStore: Send + Sync + 'static {
    /// Stores `value` under `name` in `ns`.
    fn put(
        &self,
        ns: &str,
        name: &str,
        value: Bytes,
        tier: Tier,
    ) -> crate::sync::BoxFuture<'static, Result<(), NamedError>>;
    /// The value under `name`.
    fn get(
        &self,
        ns: &str,
        name: &str,
    ) -> crate::sync::BoxFuture<'static, Result<Option<Bytes>, NamedError>>;
    /// Deletes `name`; whether it existed.
    fn delete(
        &self,
        ns: &str,
        name: &str,
    ) -> crate::sync::BoxFuture<'static, Result<bool, NamedError>>;
    /// Names with `prefix`, sorted.
    fn list(
        &self,
        ns: &str,
        prefix: &str,
    ) -> crate::sync::BoxFuture<'static, Result<Vec<String>, NamedError>>;
}

impl NamedStore for NamedObjects {
    fn put(
        &self,
        ns: &str,
        name: &str,
        value: Bytes,
        tier: Tier,
    ) -> crate::sync::BoxFuture<'static, Result<(), NamedError>> {
        let done = NamedObjects::put(self, ns, name, value, tier).map_err(NamedError::from);
        Box::pin(async move { done })
    }

    fn get(
        &self,
        ns: &str,
        name: &str,
    ) -> crate::sync::BoxFuture<'static, Result<Option<Bytes>, NamedError>> {
        let found = NamedObjects::get(self, ns, name).map_err(NamedError::from);
        Box::pin(async move { found })
    }

    fn delete(
        &self,
        ns: &str,
        name: &str,
    ) -> crate::sync::BoxFuture<'static, Result<bool, NamedError>> {
        let existed = NamedObjects::delete(self, ns, name).map_err(NamedError::from);
        Box::pin(async move { existed })
    }

    fn list(
        &self,
        ns: &str,
        prefix: &str,
    ) -> crate::sync::BoxFuture<'static, Result<Vec<String>, NamedError>> {
        let names = NamedObjects::list(self, ns, prefix).map_err(NamedError::from);
        Box::pin(async move { names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named() -> (NamedObjects, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb")).unwrap());
        (NamedObjects::new(meta), dir)
    }

    #[test]
    fn a_name_lives_in_one_tier_at_a_time() {
        let (n, _d) = named();
        n.put("ns", "a", Bytes::from_static(b"mem"), Tier::Memory)
            .unwrap();
        n.put("ns", "a", Bytes::from_static(b"disk"), Tier::Durable)
            .unwrap();
        assert_eq!(
            n.get("ns", "a").unwrap().unwrap(),
            Bytes::from_static(b"disk")
        );
        n.put("ns", "a", Bytes::from_static(b"mem2"), Tier::Memory)
            .unwrap();
        assert_eq!(
            n.get("ns", "a").unwrap().unwrap(),
            Bytes::from_static(b"mem2")
        );
        assert!(n.delete("ns", "a").unwrap());
        assert_eq!(n.get("ns", "a").unwrap(), None);
        assert!(!n.delete("ns", "a").unwrap());
    }

    #[test]
    fn listing_merges_tiers_and_respects_namespaces() {
        let (n, _d) = named();
        n.put("ns", "m/1", Bytes::new(), Tier::Memory).unwrap();
        n.put("ns", "m/2", Bytes::new(), Tier::Durable).unwrap();
        n.put("ns", "x", Bytes::new(), Tier::Memory).unwrap();
        n.put("other", "m/3", Bytes::new(), Tier::Memory).unwrap();
        assert_eq!(n.list("ns", "m/").unwrap(), vec!["m/1", "m/2"]);
        assert_eq!(n.get("other", "m/1").unwrap(), None);
    }
}
