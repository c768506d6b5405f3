//! Bearer tokens: JWTs signed with the cluster's Ed25519 key.

use super::SecurityError;
use super::pki::ClusterFiles;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a token's holder may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    ClusterAdmin,
    /// Everything within its tenant: namespaces, tokens, policies, jobs.
    TenantAdmin,
    /// Upload modules, submit and stop jobs, read.
    Developer,
    /// Read only: job status, results, logs, cluster status.
    Viewer,
}

impl Role {
    /// Whether the role may change anything (upload, submit, stop).
    pub fn may_write(self) -> bool {
        !matches!(self, Role::Viewer)
    }

    /// The role's name, as in tokens and policies.
    pub fn name(self) -> &'static str {
        match self {
            Role::ClusterAdmin => "cluster-admin",
            Role::TenantAdmin => "tenant-admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }

    /// Parses `cluster-admin`, `tenant-admin`, `developer` or `viewer`.
    pub fn parse(text: &str) -> Option<Role> {
        serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
    }
}

/// The claims of a Prism token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: `prism:<cluster id>`.
    pub iss: String,
    /// Audience: `prism-api`.
    pub aud: String,
    /// Who holds it.
    pub sub: String,
    /// The tenant it acts for (tokens from before tenants existed carry
    /// none and belong to the default tenant).
    #[serde(default = "default_tenant")]
    pub tenant: super::tenants::TenantId,
    /// Its id, by which it can be revoked (`prism token revoke`).
    #[serde(default)]
    pub jti: String,
    /// What it may do.
    pub role: Role,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
}

/// Why a token was refused. The messages are what clients see: they say
/// what to fix and nothing about the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `authorization: Bearer` metadata.
    #[error("missing bearer token")]
    Missing,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Bad signature, wrong issuer or audience, malformed.
    #[error("invalid token")]
    Invalid,
}

fn default_tenant() -> super::tenants::TenantId {
    super::tenants::TenantId::new(super::tenants::DEFAULT_TENANT)
}

/// A new random token id.
fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness the id is still unique enough to revoke by
    // (time + counter); tokens are signed either way.
    if getrandom::fill(&mut bytes).is_err() {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&now().to_le_bytes());
        bytes[8..].copy_from_slice(&n.to_le_bytes());
    }
    hex::encode(bytes)
}

#[derive(Deserialize)]
struct Identity {
    issuer: String,
    audience: String,
}

/// Issues (with the private key) and verifies tokens of one cluster.
pub struct TokenAuthority {
    issuer: String,
    audience: String,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenAuthority {
    /// Loads the cluster's identity and keys from its state directory.
    pub fn load(files: &ClusterFiles) -> Result<Self, SecurityError> {
        let identity: Identity = serde_json::from_slice(&files.read(&files.cluster_json())?)
            .map_err(|e| SecurityError::Token(format!("cluster.json: {e}")))?;
        let decoding = DecodingKey::from_ed_pem(&files.read(&files.jwt_pub())?)
            .map_err(|e| SecurityError::Token(format!("jwt.pub: {e}")))?;
        let encoding = match std::fs::read(files.jwt_key()) {
            Ok(pem) => Some(
                EncodingKey::from_ed_pem(&pem)
                    .map_err(|e| SecurityError::Token(format!("jwt.key: {e}")))?,
            ),
            Err(_) => None,
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&identity.issuer]);
        validation.set_audience(&[&identity.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(TokenAuthority {
            issuer: identity.issuer,
            audience: identity.audience,
            encoding,
            decoding,
            validation,
        })
    }

    /// Issues a token of the default tenant for `subject` with `role`,
    /// valid for `ttl`.
    pub fn issue(&self, subject: &str, role: Role, ttl: Duration) -> Result<String, SecurityError> {
        self.issue_for(super::tenants::DEFAULT_TENANT, subject, role, ttl)
    }

    /// Issues a token of `tenant` for `subject` with `role`, valid for
    /// `ttl`, with a fresh id.
    pub fn issue_for(
        &self,
        tenant: &str,
        subject: &str,
        role: Role,
        ttl: Duration,
    ) -> Result<String, SecurityError> {
        let mut claims = self.claims_for(subject, role, ttl);
        claims.tenant = super::tenants::TenantId::new(tenant);
        self.issue_claims(&claims)
    }

    /// Signs exactly `claims` (tests use it for expired tokens).
    pub fn issue_claims(&self, claims: &Claims) -> Result<String, SecurityError> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            SecurityError::Token("this state directory has no signing key (jwt.key)".into())
        })?;
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, key)
            .map_err(|e| SecurityError::Token(e.to_string()))
    }

    /// Checks signature, expiry, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenError::Expired)
            }
            Err(_) => Err(TokenError::Invalid),
        }
    }

    /// The claims a token for `subject` would carry now (for tests that
    /// need to change one).
    pub fn claims_for(&self, subject: &str, role: Role, ttl: Duration) -> Claims {
        let iat = now();
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.to_string(),
            tenant: default_tenant(),
            jti: new_jti(),
            role,
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::init;
    use super::*;

    #[test]
    fn tokens_are_checked_for_signature_expiry_issuer_and_audience() {
        let dir = tempfile::tempdir().unwrap();
        let a = TokenAuthority::load(&init(&dir.path().join("a"), &[]).unwrap().files).unwrap();
        let b = TokenAuthority::load(&init(&dir.path().join("b"), &[]).unwrap().files).unwrap();

        let good = a
            .issue("ada", Role::Developer, Duration::from_secs(60))
            .unwrap();
        let claims = a.verify(&good).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("ada", Role::Developer));

        // Another cluster's key (and issuer).
        let foreign = b
            .issue("ada", Role::ClusterAdmin, Duration::from_secs(60))
            .unwrap();
        assert_eq!(a.verify(&foreign), Err(TokenError::Invalid));

        // Expired beyond the leeway.
        let mut old = a.claims_for("ada", Role::Developer, Duration::ZERO);
        old.iat -= 7200;
        old.exp -= 3600;
        assert_eq!(
            a.verify(&a.issue_claims(&old).unwrap()),
            Err(TokenError::Expired)
        );

        // Right key, wrong audience.
        let mut elsewhere = a.claims_for("ada", Role::Developer, Duration::from_secs(60));
        elsewhere.aud = "some-other-service".into();
        assert_eq!(
            a.verify(&a.issue_claims(&elsewhere).unwrap()),
            Err(TokenError::Invalid)
        );

        // Tampered payload.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload = a
            .issue("root", Role::ClusterAdmin, Duration::from_secs(60))
            .unwrap();
        parts[1] = forged_payload.split('.').nth(1).unwrap();
        let mixed = parts.join(".");
        assert_eq!(a.verify(&mixed), Err(TokenError::Invalid));
        assert_eq!(a.verify("not a token"), Err(TokenError::Invalid));
        assert_eq!(Role::parse("viewer"), Some(Role::Viewer));

        // Tenant and id travel in the token; old tokens without them
        // belong to the default tenant.
        let acme = a
            .issue_for("acme", "bo", Role::TenantAdmin, Duration::from_secs(60))
            .unwrap();
        let claims = a.verify(&acme).unwrap();
        assert_eq!(claims.tenant, "acme");
        assert_eq!(claims.jti.len(), 32);
        assert_ne!(claims.jti, a.verify(&good).unwrap().jti);
        #[derive(Serialize)]
        struct Old<'a> {
            iss: &'a str,
            aud: &'a str,
            sub: &'a str,
            role: Role,
            iat: u64,
            exp: u64,
        }
        let c = a.claims_for("old", Role::Viewer, Duration::from_secs(60));
        let key =
            EncodingKey::from_ed_pem(&std::fs::read(dir.path().join("a").join("jwt.key")).unwrap())
                .unwrap();
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &Old {
                iss: &c.iss,
                aud: &c.aud,
                sub: "old",
                role: Role::Viewer,
                iat: c.iat,
                exp: c.exp,
            },
            &key,
        )
        .unwrap();
        let claims = a.verify(&old).unwrap();
        assert_eq!(
            (claims.tenant.as_str(), claims.jti.as_str()),
            ("default", "")
        );
        assert!(!Role::Viewer.may_write());
    }
}
