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
    /// Everything within a tenant (tenants are not built yet: as developer).
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

    /// Issues a token for `subject` with `role`, valid for `ttl`.
    pub fn issue(&self, subject: &str, role: Role, ttl: Duration) -> Result<String, SecurityError> {
        let iat = now();
        self.issue_claims(&Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.to_string(),
            role,
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
        })
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
        assert!(!Role::Viewer.may_write());
    }
}
