//! The head's durable metadata: uploaded modules, job records, the nodes
//! that joined and the unspent join tokens, in `<state-dir>/head.redb`
//! (mode 0600). A restarted head reloads all of them.

use super::MetaError;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

/// Module bytes by content address ("sha256:<hex>").
const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
/// Job records (JSON) by job id.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// What an ended job left beyond its record (JSON: its result as JSON
/// text and the tail of its log, both bounded) by job id; read only when
/// asked for, so a head's start reads the small records alone.
const JOB_DETAILS: TableDefinition<&str, &[u8]> = TableDefinition::new("job_details");
/// Node records (JSON) by node id.
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// Named actors (JSON) by "<namespace>/<name>".
const ACTOR_NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("actor_names");
/// Live placement groups (JSON: owner job and nodes) by id.
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("placement_groups");
/// Unspent join tokens: expiry (Unix seconds, 8 bytes LE) by the hex
/// sha256 of the token.
const JOIN_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("join_tokens");

/// Tenants (JSON: weight, quotas) by name.
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// Namespaces (JSON: capabilities) by "<tenant>/<namespace>".
const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");
/// Revoked tokens: expiry (Unix seconds, 8 bytes LE) by token id (`jti`).
const REVOKED_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("revoked_tokens");
/// Each tenant's own Cedar policy set (text) by tenant.
const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
/// Which tenant uploaded which module: empty values by "<tenant>/<hash>".
const MODULE_OWNERS: TableDefinition<&str, &[u8]> = TableDefinition::new("module_owners");
/// Served applications by "<tenant>/<app>": what `serve::Apps` redeploys
/// when the head starts.
const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");

/// The tables of tenancy records, for [`HeadStore::put_record`] and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records {
    /// Tenants by name.
    Tenants,
    /// Namespaces by "<tenant>/<namespace>".
    Namespaces,
    /// Revoked token ids, value: expiry (8 bytes LE).
    RevokedTokens,
    /// Tenants' policy sets.
    Policies,
    /// "<tenant>/<module hash>" for modules a tenant uploaded.
    ModuleOwners,
    /// Served applications by "<tenant>/<app>".
    Apps,
}

impl Records {
    fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Records::Tenants => TENANTS,
            Records::Namespaces => NAMESPACES,
            Records::RevokedTokens => REVOKED_TOKENS,
            Records::Policies => POLICIES,
            Records::ModuleOwners => MODULE_OWNERS,
            Records::Apps => APPS,
        }
    }
}

/// The head's durable metadata.
pub struct HeadStore {
    db: Database,
}

impl HeadStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        let db = super::open_private(path, |txn| {
            txn.open_table(MODULES)?;
            txn.open_table(JOBS)?;
            txn.open_table(JOB_DETAILS)?;
            txn.open_table(NODES)?;
            txn.open_table(JOIN_TOKENS)?;
            txn.open_table(ACTOR_NAMES)?;
            txn.open_table(GROUPS)?;
            for records in [
                Records::Tenants,
                Records::Namespaces,
                Records::RevokedTokens,
                Records::Policies,
                Records::ModuleOwners,
                Records::Apps,
            ] {
                txn.open_table(records.table())?;
            }
            Ok(())
        })?;
        Ok(HeadStore { db })
    }

    /// The database itself, for stores that keep their own tables in
    /// `head.redb` (workflows).
    pub fn database(&self) -> &Database {
        &self.db
    }

    fn put(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), MetaError> {
        let txn = self.db.begin_write()?;
        txn.open_table(table)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    fn all(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Stores a module under its content address.
    pub fn put_module(&self, hash: &str, wasm: &[u8]) -> Result<(), MetaError> {
        self.put(MODULES, hash, wasm)
    }

    /// Every stored module: (hash, bytes).
    pub fn modules(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.all(MODULES)
    }

    /// Stores (or replaces) a job record.
    pub fn put_job(&self, id: &str, record: &[u8]) -> Result<(), MetaError> {
        self.put(JOBS, id, record)
    }

    /// Stores (or replaces) what an ended job left: its result and log tail.
    pub fn put_job_details(&self, id: &str, details: &[u8]) -> Result<(), MetaError> {
        self.put(JOB_DETAILS, id, details)
    }

    /// What job `id` left, if it has ended and anything was stored.
    pub fn job_details(&self, id: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOB_DETAILS)?;
        Ok(table.get(id)?.map(|v| v.value().to_vec()))
    }

    /// Size in bytes of what job `id` left (0 if nothing was stored).
    pub fn job_details_len(&self, id: &str) -> Result<u64, MetaError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOB_DETAILS)?;
        Ok(table.get(id)?.map_or(0, |v| v.value().len() as u64))
    }

    /// Forgets job `id`: its record and what it left, in one transaction.
    pub fn delete_job(&self, id: &str) -> Result<(), MetaError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOBS)?.remove(id)?;
        txn.open_table(JOB_DETAILS)?.remove(id)?;
        txn.commit()?;
        Ok(())
    }

    /// Every job record: (id, record).
    pub fn jobs(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.all(JOBS)
    }

    /// Stores (or replaces) a node record.
    pub fn put_node(&self, id: &str, record: &[u8]) -> Result<(), MetaError> {
        self.put(NODES, id, record)
    }

    /// Every node record: (id, record).
    pub fn nodes(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.all(NODES)
    }

    /// Stores (or replaces) a named actor's record.
    pub fn put_actor_name(&self, key: &str, record: &[u8]) -> Result<(), MetaError> {
        self.put(ACTOR_NAMES, key, record)
    }

    /// Removes a named actor's record.
    pub fn delete_actor_name(&self, key: &str) -> Result<(), MetaError> {
        let txn = self.db.begin_write()?;
        txn.open_table(ACTOR_NAMES)?.remove(key)?;
        txn.commit()?;
        Ok(())
    }

    /// Every named actor's record: (key, record).
    pub fn actor_names(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.all(ACTOR_NAMES)
    }

    /// Records a live placement group.
    pub fn put_group(&self, id: &str, record: &[u8]) -> Result<(), MetaError> {
        self.put(GROUPS, id, record)
    }

    /// Forgets a placement group.
    pub fn delete_group(&self, id: &str) -> Result<(), MetaError> {
        let txn = self.db.begin_write()?;
        txn.open_table(GROUPS)?.remove(id)?;
        txn.commit()?;
        Ok(())
    }

    /// Every recorded placement group: (id, record).
    pub fn groups(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.all(GROUPS)
    }

    /// Stores (or replaces) one tenancy record.
    pub fn put_record(&self, records: Records, key: &str, value: &[u8]) -> Result<(), MetaError> {
        self.put(records.table(), key, value)
    }

    /// Removes one tenancy record and every record whose key starts with
    /// `prefix` (when given), in one transaction.
    pub fn delete_records(
        &self,
        records: Records,
        key: &str,
        prefix: Option<&str>,
    ) -> Result<(), MetaError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(records.table())?;
            table.remove(key)?;
            if let Some(prefix) = prefix {
                let doomed: Vec<String> = table
                    .iter()?
                    .filter_map(|e| e.ok())
                    .map(|(k, _)| k.value().to_string())
                    .filter(|k| k.starts_with(prefix))
                    .collect();
                for k in doomed {
                    table.remove(k.as_str())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Every record of one table: (key, value).
    pub fn records(&self, records: Records) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.all(records.table())
    }

    /// Records an unspent join token by its digest.
    pub fn put_join_token(&self, digest: &str, expires_at: u64) -> Result<(), MetaError> {
        self.put(JOIN_TOKENS, digest, &expires_at.to_le_bytes())
    }

    /// Spends a join token: removes it and returns its expiry, or `None`
    /// if no such token is unspent. One transaction, so a token joins
    /// exactly one node however many try at once.
    pub fn take_join_token(&self, digest: &str) -> Result<Option<u64>, MetaError> {
        let txn = self.db.begin_write()?;
        let expires = {
            let mut table = txn.open_table(JOIN_TOKENS)?;
            let removed = table.remove(digest)?;
            removed.and_then(|v| <[u8; 8]>::try_from(v.value()).ok().map(u64::from_le_bytes))
        };
        txn.commit()?;
        Ok(expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_and_jobs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.redb");
        {
            let store = HeadStore::open(&path).unwrap();
            store.put_module("sha256:aa", b"wasm").unwrap();
            store.put_job("job-1", b"{\"v\":1}").unwrap();
            store.put_job("job-1", b"{\"v\":2}").unwrap();
        }
        let store = HeadStore::open(&path).unwrap();
        assert_eq!(
            store.modules().unwrap(),
            vec![("sha256:aa".into(), b"wasm".to_vec())]
        );
        assert_eq!(
            store.jobs().unwrap(),
            vec![("job-1".into(), b"{\"v\":2}".to_vec())]
        );
    }

    #[test]
    fn a_deleted_job_leaves_neither_record_nor_details() {
        let dir = tempfile::tempdir().unwrap();
        let store = HeadStore::open(&dir.path().join("head.redb")).unwrap();
        store.put_job("job-1", b"{}").unwrap();
        store.put_job_details("job-1", b"12345").unwrap();
        store.put_job("job-2", b"{}").unwrap();
        assert_eq!(store.job_details_len("job-1").unwrap(), 5);
        store.delete_job("job-1").unwrap();
        assert_eq!(store.job_details("job-1").unwrap(), None);
        assert_eq!(store.job_details_len("job-1").unwrap(), 0);
        assert_eq!(store.jobs().unwrap().len(), 1);
    }

    #[test]
    fn tenancy_records_survive_reopening_and_delete_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.redb");
        {
            let store = HeadStore::open(&path).unwrap();
            store.put_record(Records::Tenants, "acme", b"{}").unwrap();
            store
                .put_record(Records::Namespaces, "acme/a", b"1")
                .unwrap();
            store
                .put_record(Records::Namespaces, "acme/b", b"2")
                .unwrap();
            store
                .put_record(Records::Namespaces, "acmex/c", b"3")
                .unwrap();
        }
        let store = HeadStore::open(&path).unwrap();
        assert_eq!(store.records(Records::Tenants).unwrap().len(), 1);
        store
            .delete_records(Records::Namespaces, "", Some("acme/"))
            .unwrap();
        assert_eq!(
            store.records(Records::Namespaces).unwrap(),
            vec![("acmex/c".to_string(), b"3".to_vec())]
        );
    }

    #[test]
    fn join_tokens_are_spent_once_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.redb");
        {
            let store = HeadStore::open(&path).unwrap();
            store.put_join_token("abc", 42).unwrap();
            store.put_node("node-1", b"{}").unwrap();
        }
        let store = HeadStore::open(&path).unwrap();
        assert_eq!(store.nodes().unwrap().len(), 1);
        assert_eq!(store.take_join_token("abc").unwrap(), Some(42));
        assert_eq!(store.take_join_token("abc").unwrap(), None);
        assert_eq!(store.take_join_token("other").unwrap(), None);
    }
}
