//! The module cache: compile once per node, instantiate in microseconds.
//!
//! A module is named by the sha256 of its bytes. The first load validates
//! and compiles it, writes the compiled artifact to
//! `<cache>/<hash>.<tenant key>.cwasm` (reused across restarts), checks its
//! imports and entry exports, and keeps an [`InstancePre`] in memory. Later
//! loads of the same bytes by the same tenant are a map lookup.
//!
//! Compiled modules are kept per tenant, in memory and on disk: a load
//! that hit another tenant's compilation would take milliseconds instead
//! of a compile's hundreds, telling a tenant which modules others run.
//! The cost is one compilation (and one copy of the code) per tenant that
//! runs a module on a node.
//!
//! Malformed modules, imports the host does not provide and entry exports
//! of the wrong type are refused here with a [`ModuleError`], before any
//! task runs.

use super::TaskState;
use crate::ids::ModuleHash;
use crate::sync::MutexExt;
use crate::task::EntryKind;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, ModuleExport, ValType};

/// Why a module was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModuleError {
    /// Not a valid WebAssembly module (parse or validation failure).
    #[error("invalid wasm module: {0}")]
    Invalid(String),
    /// The module imports something the host does not provide.
    #[error("the module imports `{module}::{name}`, which Prism does not provide")]
    UnknownImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
    },
    /// An export has the entry naming but not the entry signature.
    #[error("export `{0}` must be a function of type (i32) -> ()")]
    BadEntry(String),
    /// The module exports no linear memory named `memory`.
    #[error("the module must export its linear memory as `memory`")]
    NoMemory,
}

/// The task, driver and actor names a module exports.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModuleExports {
    /// `#[prism::task]` functions, sorted.
    pub tasks: Vec<String>,
    /// `#[prism::main]` drivers, sorted.
    pub mains: Vec<String>,
    /// `#[prism::actor]` classes, by name.
    pub actors: std::collections::BTreeMap<String, ActorClass>,
}

/// One actor class a module exports.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ActorClass {
    /// Its methods, sorted.
    pub methods: Vec<String>,
    /// Whether it saves and restores its state (`#[prism::actor(persistent)]`).
    pub persistent: bool,
}

/// A compiled module ready to instantiate.
pub struct LoadedModule {
    hash: ModuleHash,
    exports: ModuleExports,
    entries: HashMap<EntryKind, HashMap<String, ModuleExport>>,
    initializer: Option<ModuleExport>,
    pre: InstancePre<TaskState>,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("hash", &self.hash)
            .field("exports", &self.exports)
            .finish_non_exhaustive()
    }
}

impl LoadedModule {
    /// The module's content address.
    pub fn hash(&self) -> ModuleHash {
        self.hash
    }

    /// What it exports.
    pub fn exports(&self) -> &ModuleExports {
        &self.exports
    }

    pub(crate) fn entry(&self, kind: EntryKind, function: &str) -> Option<&ModuleExport> {
        self.entries.get(&kind)?.get(function)
    }

    pub(crate) fn initializer(&self) -> Option<&ModuleExport> {
        self.initializer.as_ref()
    }

    pub(crate) fn pre(&self) -> &InstancePre<TaskState> {
        &self.pre
    }
}

/// A module as one tenant loaded it: compilations are never shared
/// between tenants (see [`ModuleCache::load_for`]).
type TenantModule = (Arc<str>, ModuleHash);

/// Compiled modules by tenant and hash, in memory and on disk.
pub struct ModuleCache {
    engine: Engine,
    linker: Linker<TaskState>,
    dir: PathBuf,
    loaded: Mutex<HashMap<TenantModule, Arc<LoadedModule>>>,
}

/// The tenant of single-user callers ([`ModuleCache::load`],
/// [`ModuleCache::get`]): the CLI, benchmarks, an embedded cluster.
pub const LOCAL_TENANT: &str = "";

impl ModuleCache {
    pub(super) fn new(
        engine: Engine,
        linker: Linker<TaskState>,
        dir: PathBuf,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        // Compiled artifacts are native code: only this node may write them.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(ModuleCache {
            engine,
            linker,
            dir,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// A module already loaded on this node for the local tenant.
    pub fn get(&self, hash: ModuleHash) -> Option<Arc<LoadedModule>> {
        self.get_for(LOCAL_TENANT, hash)
    }

    /// A module already loaded on this node for `tenant`.
    pub fn get_for(&self, tenant: &str, hash: ModuleHash) -> Option<Arc<LoadedModule>> {
        self.loaded
            .locked()
            .get(&(Arc::from(tenant), hash))
            .cloned()
    }

    /// Loads a module for the local tenant ([`ModuleCache::load_for`]).
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, ModuleError> {
        self.load_for(LOCAL_TENANT, bytes)
    }

    /// Loads (validating and compiling if needed) a module from its bytes
    /// for `tenant`: another tenant's compilation of the same bytes is
    /// never reused. CPU-heavy on first sight of a module by a tenant:
    /// call from a blocking context.
    pub fn load_for(&self, tenant: &str, bytes: &[u8]) -> Result<Arc<LoadedModule>, ModuleError> {
        let hash = ModuleHash::of(bytes);
        if let Some(m) = self.get_for(tenant, hash) {
            return Ok(m);
        }
        let module = self.compile_cached(tenant, hash, bytes)?;
        let loaded = Arc::new(self.prepare(hash, module)?);
        let mut map = self.loaded.locked();
        Ok(map
            .entry((Arc::from(tenant), hash))
            .or_insert(loaded)
            .clone())
    }

    fn artifact_path(&self, tenant: &str, hash: ModuleHash) -> PathBuf {
        // Tenant names are not file names: a digest of one is.
        use sha2::Digest;
        let key = hex::encode(&sha2::Sha256::digest(tenant.as_bytes())[..8]);
        self.dir.join(format!("{hash}.{key}.cwasm"))
    }

    fn compile_cached(
        &self,
        tenant: &str,
        hash: ModuleHash,
        bytes: &[u8],
    ) -> Result<Module, ModuleError> {
        let path = self.artifact_path(tenant, hash);
        if path.exists() {
            // SAFETY: the cache directory belongs to this node and artifacts
            // are only ever written by `Module::serialize` below, under the
            // hash of the bytes they were compiled from. wasmtime checks
            // that an artifact matches this engine's version and settings
            // and refuses it otherwise.
            match unsafe { Module::deserialize_file(&self.engine, &path) } {
                Ok(module) => return Ok(module),
                Err(e) => tracing::info!(%hash, error = %e, "stale compiled artifact; recompiling"),
            }
        }
        let module =
            Module::new(&self.engine, bytes).map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        match module.serialize() {
            Ok(artifact) => {
                let tmp = path.with_extension("cwasm.tmp");
                if let Err(e) =
                    std::fs::write(&tmp, artifact).and_then(|_| std::fs::rename(&tmp, &path))
                {
                    tracing::warn!(%hash, error = %e, "could not cache the compiled module");
                }
            }
            Err(e) => tracing::warn!(%hash, error = %e, "could not serialize the compiled module"),
        }
        Ok(module)
    }

    fn prepare(&self, hash: ModuleHash, module: Module) -> Result<LoadedModule, ModuleError> {
        for import in module.imports() {
            let known = super::wasi::provides(import.module())
                || (import.module() == prism_abi::IMPORT_MODULE
                    && super::abi::provides(import.name()));
            if !known {
                return Err(ModuleError::UnknownImport {
                    module: import.module().to_string(),
                    name: import.name().to_string(),
                });
            }
        }
        if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
            return Err(ModuleError::NoMemory);
        }
        let mut exports = ModuleExports::default();
        let mut entries: HashMap<EntryKind, HashMap<String, ModuleExport>> = HashMap::new();
        let prefixes = [
            (prism_abi::TASK_EXPORT_PREFIX, EntryKind::Task),
            (prism_abi::MAIN_EXPORT_PREFIX, EntryKind::Main),
            (prism_abi::ACTOR_NEW_PREFIX, EntryKind::ActorNew),
            (prism_abi::ACTOR_CALL_PREFIX, EntryKind::ActorMethod),
            (prism_abi::ACTOR_SAVE_PREFIX, EntryKind::ActorSave),
            (prism_abi::ACTOR_RESTORE_PREFIX, EntryKind::ActorRestore),
        ];
        let mut methods = Vec::new();
        for export in module.exports() {
            let name = export.name();
            let Some((kind, function)) = prefixes
                .iter()
                .find_map(|(prefix, kind)| name.strip_prefix(prefix).map(|f| (*kind, f)))
            else {
                continue;
            };
            let ExternType::Func(ty) = export.ty() else {
                return Err(ModuleError::BadEntry(name.to_string()));
            };
            let params: Vec<ValType> = ty.params().collect();
            if params.len() != 1 || !matches!(params[0], ValType::I32) || ty.results().len() != 0 {
                return Err(ModuleError::BadEntry(name.to_string()));
            }
            let Some(index) = module.get_export_index(name) else {
                continue;
            };
            match kind {
                EntryKind::Task => exports.tasks.push(function.to_string()),
                EntryKind::Main => exports.mains.push(function.to_string()),
                EntryKind::ActorNew => {
                    exports.actors.entry(function.to_string()).or_default();
                }
                EntryKind::ActorMethod => methods.push(function.to_string()),
                EntryKind::ActorSave => {}
                EntryKind::ActorRestore => {
                    exports
                        .actors
                        .entry(function.to_string())
                        .or_default()
                        .persistent = true;
                }
            }
            entries
                .entry(kind)
                .or_default()
                .insert(function.to_string(), index);
        }
        // A method export is `<Class>__<method>`; the class is the longest
        // declared class that prefixes it (names may contain `__`).
        for function in methods {
            let class = exports
                .actors
                .keys()
                .filter(|c| function.starts_with(&format!("{c}{}", prism_abi::METHOD_SEPARATOR)))
                .max_by_key(|c| c.len())
                .cloned();
            match class {
                Some(class) => {
                    let method =
                        function[class.len() + prism_abi::METHOD_SEPARATOR.len()..].to_string();
                    if let Some(c) = exports.actors.get_mut(&class) {
                        c.methods.push(method);
                    }
                }
                None => {
                    return Err(ModuleError::BadEntry(format!(
                        "{}{function}",
                        prism_abi::ACTOR_CALL_PREFIX
                    )));
                }
            }
        }
        for (class, info) in exports.actors.iter_mut() {
            info.methods.sort();
            let has_save = entries
                .get(&EntryKind::ActorSave)
                .is_some_and(|e| e.contains_key(class));
            if info.persistent != has_save {
                return Err(ModuleError::BadEntry(format!(
                    "{}{class} (a persistent actor exports both save and restore)",
                    prism_abi::ACTOR_SAVE_PREFIX
                )));
            }
        }
        exports.tasks.sort();
        exports.mains.sort();
        let initializer = match module.get_export("_initialize") {
            Some(ExternType::Func(ty)) if ty.params().len() == 0 && ty.results().len() == 0 => {
                module.get_export_index("_initialize")
            }
            _ => None,
        };
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        Ok(LoadedModule {
            hash,
            exports,
            entries,
            initializer,
            pre,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuntimeConfig;

    #[test]
    fn compilations_are_never_shared_between_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = super::super::Runtime::new(
            &RuntimeConfig {
                instance_slots: 4,
                ..RuntimeConfig::default()
            },
            dir.path().join("modules"),
        )
        .unwrap();
        let cache = runtime.modules();
        let hash = ModuleHash::of(prism_guests::HELLO);
        let a = cache.load_for("acme", prism_guests::HELLO).unwrap();
        assert!(cache.get_for("acme", hash).is_some());
        // Another tenant finds nothing compiled: its first load compiles.
        assert!(cache.get_for("zeta", hash).is_none());
        assert!(cache.get(hash).is_none());
        let z = cache.load_for("zeta", prism_guests::HELLO).unwrap();
        assert!(!Arc::ptr_eq(&a, &z));
        let artifacts = std::fs::read_dir(dir.path().join("modules"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
            })
            .count();
        assert_eq!(artifacts, 2, "one artifact per tenant on disk");
    }
}
