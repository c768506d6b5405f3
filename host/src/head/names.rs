//! The head's directory of actor names ([`ActorDirectory`]).
//!
//! A name belongs to the cluster, not to a node: the head keeps every
//! claimed name with its actor's id (whose tag says which node hosts it)
//! and class, in memory and in `head.redb`. The head's own node uses the
//! directory directly; worker nodes reach it through `NodeControl`. A
//! restarted head keeps the names of detached actors (they outlive jobs,
//! and the head's restart); names of other actors belonged to jobs that
//! died with the head and are dropped.

use crate::cluster::{ActorDirectory, DirectoryError, NameClaim};
use crate::ids::ActorId;
use crate::meta::HeadStore;
use crate::runtime::BoxFuture;
use crate::sync::MutexExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct NamedActor {
    /// The actor id in hex.
    id: String,
    class: String,
    detached: bool,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn parse_id(hex_id: &str) -> Option<ActorId> {
    let mut bytes = [0u8; 16];
    hex::decode_to_slice(hex_id, &mut bytes).ok()?;
    Some(ActorId::from_bytes(bytes))
}

/// The directory of actor names.
pub struct ActorNames {
    store: Arc<HeadStore>,
    names: Mutex<HashMap<String, NamedActor>>,
    /// Actors restarted on another node after theirs died: old id → new.
    moves: Mutex<HashMap<ActorId, ActorId>>,
}

impl ActorNames {
    /// The names `store` remembers (detached actors' only).
    pub fn load(store: Arc<HeadStore>) -> Result<Arc<Self>, crate::meta::MetaError> {
        let mut names = HashMap::new();
        for (key, bytes) in store.actor_names()? {
            match serde_json::from_slice::<NamedActor>(&bytes) {
                // Detached actors on workers live on; those on the head's
                // own node died with it.
                Ok(actor)
                    if actor.detached
                        && parse_id(&actor.id)
                            .is_some_and(|id| id.node_tag() != crate::net::HEAD_NODE_TAG) =>
                {
                    names.insert(key, actor);
                }
                _ => store.delete_actor_name(&key)?,
            }
        }
        Ok(Arc::new(ActorNames {
            store,
            names: Mutex::new(names),
            moves: Mutex::new(HashMap::new()),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, NamedActor>> {
        self.names.locked()
    }

    /// Claims a name now (see [`ActorDirectory::claim`]).
    pub fn claim_now(
        &self,
        namespace: &str,
        name: &str,
        id: ActorId,
        class: &str,
        detached: bool,
    ) -> Result<NameClaim, DirectoryError> {
        let key = key(namespace, name);
        let mut names = self.lock();
        if let Some(existing) = names.get(&key)
            && let Some(existing_id) = parse_id(&existing.id)
        {
            return Ok(NameClaim::Existing {
                id: existing_id,
                class: existing.class.clone(),
            });
        }
        let actor = NamedActor {
            id: id.to_string(),
            class: class.to_string(),
            detached,
        };
        let bytes =
            serde_json::to_vec(&actor).map_err(|e| DirectoryError::Unrecorded(e.to_string()))?;
        self.store
            .put_actor_name(&key, &bytes)
            .map_err(|e| DirectoryError::Unrecorded(e.to_string()))?;
        names.insert(key, actor);
        Ok(NameClaim::Claimed)
    }

    /// The holder of a name now.
    pub fn lookup_now(&self, namespace: &str, name: &str) -> Option<(ActorId, String)> {
        let names = self.lock();
        let actor = names.get(&key(namespace, name))?;
        Some((parse_id(&actor.id)?, actor.class.clone()))
    }

    /// Frees a name if `id` holds it.
    pub fn release_now(&self, namespace: &str, name: &str, id: ActorId) {
        let key = key(namespace, name);
        let mut names = self.lock();
        if names.get(&key).is_some_and(|a| a.id == id.to_string()) {
            names.remove(&key);
            if let Err(e) = self.store.delete_actor_name(&key) {
                tracing::warn!("could not forget the actor name {key}: {e}");
            }
        }
    }
}

impl ActorNames {
    /// Frees every name `id` holds in a namespace of `tenant`.
    pub fn release_actor_now(&self, tenant: &str, id: ActorId) {
        let prefix = crate::security::tenants::tenant_prefix(tenant);
        let id = id.to_string();
        self.release_where(|key, a| a.id == id && key.starts_with(&prefix));
    }

    /// Frees every name whose (key, holder) satisfies `doomed`, in memory
    /// and in `head.redb`.
    fn release_where(&self, doomed: impl Fn(&str, &NamedActor) -> bool) {
        let mut names = self.lock();
        let gone: Vec<String> = names
            .iter()
            .filter(|(k, a)| doomed(k, a))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            names.remove(&key);
            if let Err(e) = self.store.delete_actor_name(&key) {
                tracing::warn!("could not forget the actor name {key}: {e}");
            }
        }
    }

    /// Records a restart on another node.
    pub fn record_move_now(&self, old: ActorId, new: ActorId) {
        self.moves.locked().insert(old, new);
    }

    /// Where `id` lives now, following every recorded move.
    pub fn resolve_move_now(&self, mut id: ActorId) -> Option<ActorId> {
        let moves = self.moves.locked();
        let start = id;
        for _ in 0..64 {
            match moves.get(&id) {
                Some(next) => id = *next,
                None => break,
            }
        }
        (id != start).then_some(id)
    }

    /// Frees the names of every actor the node with `tag` hosted (it was
    /// declared dead, and its actors with it).
    pub fn release_node(&self, tag: u32) {
        self.release_where(|_, a| parse_id(&a.id).is_some_and(|id| id.node_tag() == tag));
    }
}

impl ActorDirectory for ActorNames {
    fn claim(
        &self,
        namespace: &str,
        name: &str,
        id: ActorId,
        class: &str,
        detached: bool,
    ) -> BoxFuture<'static, Result<NameClaim, DirectoryError>> {
        let claimed = self.claim_now(namespace, name, id, class, detached);
        Box::pin(async move { claimed })
    }

    fn lookup(&self, namespace: &str, name: &str) -> BoxFuture<'static, Option<(ActorId, String)>> {
        let found = self.lookup_now(namespace, name);
        Box::pin(async move { found })
    }

    fn release(&self, namespace: &str, name: &str, id: ActorId) {
        self.release_now(namespace, name, id)
    }

    fn release_actor(&self, tenant: &crate::security::tenants::TenantId, id: ActorId) {
        self.release_actor_now(tenant, id)
    }

    fn record_move(&self, old: ActorId, new: ActorId) {
        self.record_move_now(old, new)
    }

    fn resolve_move(&self, id: ActorId) -> BoxFuture<'static, Option<ActorId>> {
        let found = self.resolve_move_now(id);
        Box::pin(async move { found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_claimed_once_and_detached_ones_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.redb");
        // Actors on a worker (tag 2); one on the head's own node (tag 1).
        let (a, b, c) = (
            ActorId::random_with_tag(2),
            ActorId::random_with_tag(2),
            ActorId::random_with_tag(2),
        );
        let on_head = ActorId::random_with_tag(crate::net::HEAD_NODE_TAG);
        {
            let names = ActorNames::load(Arc::new(HeadStore::open(&path).unwrap())).unwrap();
            assert!(matches!(
                names.claim_now("ns", "kept", a, "Kit", true),
                Ok(NameClaim::Claimed)
            ));
            assert!(matches!(
                names.claim_now("ns", "kept", b, "Kit", true),
                Ok(NameClaim::Existing { id, .. }) if id == a
            ));
            names.claim_now("ns", "job-bound", b, "Kit", false).unwrap();
            names
                .claim_now("ns", "on-head", on_head, "Kit", true)
                .unwrap();
            names.claim_now("ns", "freed", c, "Kit", true).unwrap();
            // Only the holder frees a name.
            names.release_now("ns", "freed", a);
            assert!(names.lookup_now("ns", "freed").is_some());
            names.release_now("ns", "freed", c);
            assert!(names.lookup_now("ns", "freed").is_none());
        }
        let names = ActorNames::load(Arc::new(HeadStore::open(&path).unwrap())).unwrap();
        assert_eq!(names.lookup_now("ns", "kept"), Some((a, "Kit".to_string())));
        assert_eq!(names.lookup_now("ns", "job-bound"), None);
        assert_eq!(names.lookup_now("ns", "on-head"), None);
        assert_eq!(names.lookup_now("other", "kept"), None);
        // The worker dies: its actors' names are free again.
        names.release_node(2);
        assert_eq!(names.lookup_now("ns", "kept"), None);
    }

    #[test]
    fn an_actor_is_released_by_id_within_its_tenant_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(HeadStore::open(&dir.path().join("head.redb")).unwrap());
        let names = ActorNames::load(store).unwrap();
        let a = ActorId::random_with_tag(2);
        names.claim_now("acme/ns", "x", a, "Kit", false).unwrap();
        names.claim_now("acme/other", "y", a, "Kit", false).unwrap();
        names.claim_now("zeta/ns", "x", a, "Kit", false).unwrap();
        // Another tenant naming the id frees nothing of acme's.
        names.release_actor_now("acm", a);
        names.release_actor_now("zeta", a);
        assert!(names.lookup_now("acme/ns", "x").is_some());
        assert!(names.lookup_now("zeta/ns", "x").is_none());
        names.release_actor_now("acme", a);
        assert!(names.lookup_now("acme/ns", "x").is_none());
        assert!(names.lookup_now("acme/other", "y").is_none());
    }
}
