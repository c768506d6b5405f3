//! The head's durable metadata: uploaded modules and job records, in
//! `<state-dir>/head.redb` (mode 0600). A restarted head reloads both.

use super::MetaError;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

/// Module bytes by content address ("sha256:<hex>").
const MODULES: TableDefinition<&str, &[u8]> = TableDefinition::new("modules");
/// Job records (JSON) by job id.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

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
            Ok(())
        })?;
        Ok(HeadStore { db })
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

    /// Every job record: (id, record).
    pub fn jobs(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.all(JOBS)
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
}
