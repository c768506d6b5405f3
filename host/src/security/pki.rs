//! The cluster's files: CA, head certificate, token key, first token.

use super::SecurityError;
use super::tokens::{Role, TokenAuthority};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Paths of a cluster's state directory.
#[derive(Clone, Debug)]
pub struct ClusterFiles {
    dir: PathBuf,
}

impl ClusterFiles {
    /// The files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ClusterFiles { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ca.pem`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// `ca.key`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// `head.pem`.
    pub fn head_cert(&self) -> PathBuf {
        self.dir.join("head.pem")
    }
    /// `head.key`.
    pub fn head_key(&self) -> PathBuf {
        self.dir.join("head.key")
    }
    /// `jwt.key` (Ed25519, PKCS#8 PEM).
    pub fn jwt_key(&self) -> PathBuf {
        self.dir.join("jwt.key")
    }
    /// `jwt.pub`.
    pub fn jwt_pub(&self) -> PathBuf {
        self.dir.join("jwt.pub")
    }
    /// `admin.token`.
    pub fn admin_token(&self) -> PathBuf {
        self.dir.join("admin.token")
    }
    /// `cluster.json`.
    pub fn cluster_json(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }

    /// Reads one of the files.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, SecurityError> {
        std::fs::read(path).map_err(|source| SecurityError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// What `prism init` made.
#[derive(Debug)]
pub struct InitReport {
    /// The new cluster's id.
    pub cluster_id: String,
    /// Where the files are.
    pub files: ClusterFiles,
}

/// Writes `bytes` to a new file readable only by its owner.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecurityError> {
    let io = |source| SecurityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// This year (UTC), for certificate validity.
pub(crate) fn this_year() -> i32 {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    1970 + (days as f64 / 365.2425) as i32
}

/// The CA is valid for 10 years, the head's certificate for 2, both from
/// the start of this year.
const CA_YEARS: i32 = 10;
const HEAD_YEARS: i32 = 2;

fn pki(e: rcgen::Error) -> SecurityError {
    SecurityError::Pki(e.to_string())
}

/// Creates a cluster in `dir`: CA, head certificate (for localhost and
/// `sans`), token key and a first admin token. Refuses to overwrite one.
pub fn init(dir: &Path, sans: &[String]) -> Result<InitReport, SecurityError> {
    let files = ClusterFiles::new(dir);
    if files.cluster_json().exists() {
        return Err(SecurityError::AlreadyInitialized(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(|source| SecurityError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }

    let cluster_id = {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| SecurityError::Pki(e.to_string()))?;
        hex::encode(bytes)
    };

    // The CA.
    let ca_key = KeyPair::generate().map_err(pki)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("Prism cluster {cluster_id} CA"));
    let year = this_year();
    ca_params.not_before = rcgen::date_time_ymd(year, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(year + CA_YEARS, 1, 1);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(pki)?;

    // The head's certificate.
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(sans.iter().cloned());
    let head_key = KeyPair::generate().map_err(pki)?;
    let mut head_params = CertificateParams::new(names).map_err(pki)?;
    head_params
        .distinguished_name
        .push(DnType::CommonName, "prism head");
    head_params.not_before = rcgen::date_time_ymd(year, 1, 1);
    head_params.not_after = rcgen::date_time_ymd(year + HEAD_YEARS, 1, 1);
    head_params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let issuer = Issuer::new(ca_params, ca_key);
    let head_cert = head_params.signed_by(&head_key, &issuer).map_err(pki)?;

    // The token key.
    let jwt_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(pki)?;

    write_private(&files.ca_cert(), ca_cert.pem().as_bytes())?;
    write_private(&files.ca_key(), issuer.key().serialize_pem().as_bytes())?;
    write_private(&files.head_cert(), head_cert.pem().as_bytes())?;
    write_private(&files.head_key(), head_key.serialize_pem().as_bytes())?;
    write_private(&files.jwt_key(), jwt_key.serialize_pem().as_bytes())?;
    write_private(&files.jwt_pub(), jwt_key.public_key_pem().as_bytes())?;
    let identity = serde_json::json!({
        "cluster_id": cluster_id,
        "issuer": format!("prism:{cluster_id}"),
        "audience": "prism-api",
    });
    write_private(&files.cluster_json(), identity.to_string().as_bytes())?;

    let authority = TokenAuthority::load(&files)?;
    let token = authority.issue(
        "admin",
        Role::ClusterAdmin,
        Duration::from_secs(365 * 86_400),
    )?;
    write_private(&files.admin_token(), format!("{token}\n").as_bytes())?;
    Ok(InitReport { cluster_id, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_private_files_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let report = init(&state, &["head.example".into()]).unwrap();
        let files = &report.files;
        for path in [
            files.ca_cert(),
            files.ca_key(),
            files.head_cert(),
            files.head_key(),
            files.jwt_key(),
            files.jwt_pub(),
            files.admin_token(),
            files.cluster_json(),
        ] {
            let meta = std::fs::metadata(&path).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(
                    meta.permissions().mode() & 0o777,
                    0o600,
                    "{}",
                    path.display()
                );
            }
            assert!(meta.len() > 0);
        }
        // The admin token verifies against the new key.
        let authority = TokenAuthority::load(files).unwrap();
        let token = String::from_utf8(files.read(&files.admin_token()).unwrap()).unwrap();
        let claims = authority.verify(token.trim()).unwrap();
        assert_eq!(claims.role, Role::ClusterAdmin);
        assert!(matches!(
            init(&state, &[]),
            Err(SecurityError::AlreadyInitialized(_))
        ));
    }
}
