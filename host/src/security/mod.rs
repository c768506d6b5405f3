//! Who may talk to the cluster: its PKI and its tokens.
//!
//! `prism init --dir STATE` ([`init`]) creates, each file mode 0600:
//! - `ca.pem`, `ca.key`: the cluster CA (ECDSA P-256), which signs every
//!   server certificate; clients trust only it;
//! - `head.pem`, `head.key`: the head's TLS certificate, for `localhost`,
//!   `127.0.0.1`, `::1` and any `--san` names;
//! - `jwt.key`, `jwt.pub`: the Ed25519 key that signs bearer tokens;
//! - `admin.token`: a first token, role `cluster-admin`, valid 365 days;
//! - `cluster.json`: the cluster id, and the issuer and audience every token
//!   must carry.
//!
//! Worker nodes join with a one-time join token and get a certificate
//! signed by the CA for their own key ([`NodeAuthority`]); between nodes,
//! every call is mutual TLS.
//!
//! [`TokenAuthority`] issues and verifies tokens (JWT, EdDSA): signature,
//! expiry (30 s leeway for clock skew), issuer and audience are all checked.
//! A token acts for one tenant.
//!
//! Tenancy: [`Tenancy`] keeps tenants, namespaces (with their sandbox
//! [`Capabilities`]), quotas, revoked token ids and each tenant's policy
//! text in `head.redb`; [`Policies`] decides actions with Cedar (the schema
//! and default set in `policies/`); [`Access`] puts both in front of every
//! API call and writes the audit log; a job's [`JobGrant`] carries what
//! was decided to every node that runs its guests.

pub mod access;
mod nodes;
mod pki;
pub mod policy;
pub mod tenants;
mod tokens;

pub use access::{Access, AccessError};
pub use nodes::{
    NodeAuthority, certificate_subject, join_token_digest, new_join_token, node_key_and_request,
    node_server_name,
};
pub use pki::{ClusterFiles, InitReport, init};
pub use policy::{Action, Decision, Policies, PolicyError, Principal, Resource};
pub use tenants::{
    Capabilities, DEFAULT_TENANT, GuestPermissions, JobGrant, Quotas, Tenancy, TenancyError,
};
pub use tokens::{Claims, Role, TokenAuthority, TokenError};

/// Failures of `prism init` and of loading the cluster's files.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `prism init` found a cluster already there.
    #[error("{0} already holds a cluster (found cluster.json); refusing to overwrite it")]
    AlreadyInitialized(std::path::PathBuf),
    /// Certificate or key generation or parsing failed.
    #[error("certificates: {0}")]
    Pki(String),
    /// A key or token could not be made or parsed.
    #[error("tokens: {0}")]
    Token(String),
}
