//! Durable metadata in redb: one database file per node
//! (`<data-dir>/meta.redb`), written through transactions that are durable
//! when they return.
//!
//! Tables:
//! - `named_objects`: (namespace, name) → MessagePack value, the durable
//!   tier of named objects;
//! - `actor_state`: (namespace, key) → MessagePack state of persistent
//!   actors (key `name:<name>` for named actors, `id:<hex>` otherwise).
//!
//! Everything in this module is blocking I/O; callers on the async runtime
//! accept that a durable write costs a disk sync.

mod head;

pub use head::{HeadStore, Records};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const NAMED_OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("named_objects");
const ACTOR_STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("actor_state");

/// Failures of the metadata store.
#[derive(Debug, thiserror::Error)]
#[error("metadata store: {0}")]
pub struct MetaError(#[from] redb::Error);

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self {
                MetaError(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Opens (or creates) a database readable only by its owner (mode 0600)
/// and creates its tables with `tables`.
fn open_private(
    path: &Path,
    tables: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::TableError>,
) -> Result<Database, MetaError> {
    let db = Database::create(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| MetaError(redb::Error::Io(e)))?;
    }
    let txn = db.begin_write()?;
    tables(&txn)?;
    txn.commit()?;
    Ok(db)
}

/// The node's durable metadata.
pub struct MetaStore {
    db: Database,
}

impl MetaStore {
    /// Opens (or creates) the database at `path` and its tables.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        // Durable named objects and actor state are the jobs' data.
        let db = open_private(path, |txn| {
            txn.open_table(NAMED_OBJECTS)?;
            txn.open_table(ACTOR_STATE)?;
            Ok(())
        })?;
        Ok(MetaStore { db })
    }

    fn put(
        &self,
        table: TableDefinition<(&str, &str), &[u8]>,
        ns: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), MetaError> {
        let txn = self.db.begin_write()?;
        txn.open_table(table)?.insert((ns, key), value)?;
        txn.commit()?;
        Ok(())
    }

    fn get(
        &self,
        table: TableDefinition<(&str, &str), &[u8]>,
        ns: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, MetaError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        Ok(table.get((ns, key))?.map(|v| v.value().to_vec()))
    }

    fn delete(
        &self,
        table: TableDefinition<(&str, &str), &[u8]>,
        ns: &str,
        key: &str,
    ) -> Result<bool, MetaError> {
        let txn = self.db.begin_write()?;
        let existed = txn.open_table(table)?.remove((ns, key))?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    /// Stores a durable named object.
    pub fn put_named(&self, ns: &str, name: &str, value: &[u8]) -> Result<(), MetaError> {
        self.put(NAMED_OBJECTS, ns, name, value)
    }

    /// A durable named object.
    pub fn get_named(&self, ns: &str, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.get(NAMED_OBJECTS, ns, name)
    }

    /// Deletes a durable named object; returns whether it existed.
    pub fn delete_named(&self, ns: &str, name: &str) -> Result<bool, MetaError> {
        self.delete(NAMED_OBJECTS, ns, name)
    }

    /// Names of durable objects in `ns` starting with `prefix`, sorted.
    pub fn list_named(&self, ns: &str, prefix: &str) -> Result<Vec<String>, MetaError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NAMED_OBJECTS)?;
        let mut names = Vec::new();
        for entry in table.range((ns, prefix)..)? {
            let (key, _) = entry?;
            let (key_ns, name) = key.value();
            if key_ns != ns || !name.starts_with(prefix) {
                break;
            }
            names.push(name.to_string());
        }
        Ok(names)
    }

    /// Deletes every durable named object and saved actor state whose
    /// namespace starts with `prefix`; returns how many.
    pub fn purge(&self, prefix: &str) -> Result<usize, MetaError> {
        let txn = self.db.begin_write()?;
        let mut purged = 0;
        for table in [NAMED_OBJECTS, ACTOR_STATE] {
            let mut table = txn.open_table(table)?;
            let doomed: Vec<(String, String)> = table
                .range((prefix, "")..)?
                .filter_map(|e| e.ok())
                .map(|(k, _)| {
                    let (ns, key) = k.value();
                    (ns.to_string(), key.to_string())
                })
                .take_while(|(ns, _)| ns.starts_with(prefix))
                .collect();
            for (ns, key) in &doomed {
                table.remove((ns.as_str(), key.as_str()))?;
            }
            purged += doomed.len();
        }
        txn.commit()?;
        Ok(purged)
    }

    /// Saves a persistent actor's state.
    pub fn put_actor_state(&self, ns: &str, key: &str, state: &[u8]) -> Result<(), MetaError> {
        self.put(ACTOR_STATE, ns, key, state)
    }

    /// A persistent actor's saved state.
    pub fn get_actor_state(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.get(ACTOR_STATE, ns, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_objects_survive_reopening_and_list_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let meta = MetaStore::open(&path).unwrap();
            meta.put_named("ml", "model/1", b"one").unwrap();
            meta.put_named("ml", "model/2", b"two").unwrap();
            meta.put_named("ml", "other", b"x").unwrap();
            meta.put_named("mm", "model/3", b"elsewhere").unwrap();
        }
        let meta = MetaStore::open(&path).unwrap();
        assert_eq!(
            meta.get_named("ml", "model/2").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(
            meta.list_named("ml", "model/").unwrap(),
            vec!["model/1", "model/2"]
        );
        assert_eq!(meta.list_named("ml", "").unwrap().len(), 3);
        assert!(meta.delete_named("ml", "model/1").unwrap());
        assert!(!meta.delete_named("ml", "model/1").unwrap());
        assert_eq!(meta.get_named("mm", "model/1").unwrap(), None);
    }

    #[test]
    fn purging_a_prefix_removes_named_objects_and_state_of_those_namespaces_only() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
        meta.put_named("acme/a", "x", b"1").unwrap();
        meta.put_named("acme/b", "y", b"2").unwrap();
        meta.put_named("acmex/a", "z", b"3").unwrap();
        meta.put_actor_state("acme/a", "K:name:k", b"s").unwrap();
        assert_eq!(meta.purge("acme/").unwrap(), 3);
        assert_eq!(meta.get_named("acme/a", "x").unwrap(), None);
        assert_eq!(meta.get_actor_state("acme/a", "K:name:k").unwrap(), None);
        assert!(meta.get_named("acmex/a", "z").unwrap().is_some());
    }

    #[test]
    fn actor_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("meta.redb")).unwrap();
        assert_eq!(meta.get_actor_state("ns", "name:a").unwrap(), None);
        meta.put_actor_state("ns", "name:a", b"s1").unwrap();
        meta.put_actor_state("ns", "name:a", b"s2").unwrap();
        assert_eq!(
            meta.get_actor_state("ns", "name:a").unwrap().as_deref(),
            Some(&b"s2"[..])
        );
    }
}
