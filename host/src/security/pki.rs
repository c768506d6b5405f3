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

/// The DER of a PKCS#8 v1 (RFC 8410) Ed25519 private key, up to the
/// 32-byte seed: `PrivateKeyInfo { version 0, algorithm id-Ed25519,
/// privateKey OCTET STRING { OCTET STRING seed } }`.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A new Ed25519 key for signing tokens, kept as PKCS#8 v1, which
/// `openssl pkey` (OpenSSL 3), jsonwebtoken and ring all read. (ring's
/// own `generate_pkcs8` writes a v2 document, with the public key
/// embedded, that OpenSSL 3 refuses; `jwt.key` files of that format,
/// written by earlier versions, still load.)
fn generate_jwt_key() -> Result<KeyPair, SecurityError> {
    let mut der = ED25519_PKCS8_V1_PREFIX.to_vec();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| SecurityError::Pki(e.to_string()))?;
    der.extend_from_slice(&seed);
    seed.fill(0);
    KeyPair::try_from(der).map_err(pki)
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
    let jwt_key = generate_jwt_key()?;

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

    fn pem_der(pem: &str, label: &str) -> Vec<u8> {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let body = pem
            .trim()
            .strip_prefix(&begin)
            .and_then(|rest| rest.strip_suffix(&end))
            .unwrap_or_else(|| panic!("not a {label} PEM: {pem}"));
        let body: String = body.split_whitespace().collect();
        base64_decode(&body)
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in text.bytes().take_while(|&c| c != b'=') {
            let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }

    /// Signs and verifies a token with the keys in `files`.
    fn tokens_work(files: &ClusterFiles) {
        let authority = TokenAuthority::load(files).expect("keys load");
        let token = authority
            .issue("someone", Role::Viewer, Duration::from_secs(60))
            .expect("signs");
        let claims = authority.verify(&token).expect("verifies");
        assert_eq!(claims.role, Role::Viewer);
    }

    #[test]
    fn the_token_key_is_standard_pkcs8() {
        let dir = tempfile::tempdir().unwrap();
        let files = init(&dir.path().join("state"), &[]).unwrap().files;
        let pem = String::from_utf8(files.read(&files.jwt_key()).unwrap()).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let der = pem_der(&pem, "PRIVATE KEY");
        assert_eq!(der.len(), 48, "a v1 document holds only the seed");
        assert_eq!(der[..16], ED25519_PKCS8_V1_PREFIX);
        jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).expect("jsonwebtoken reads it");
        tokens_work(&files);
        // jwt.pub is the matching public key.
        let public = pem_der(
            &String::from_utf8(files.read(&files.jwt_pub()).unwrap()).unwrap(),
            "PUBLIC KEY",
        );
        let key = KeyPair::from_pem(&pem).unwrap();
        assert_eq!(public[public.len() - 32..], *key.public_key_raw());

        // OpenSSL 3 reads it too (where OpenSSL is installed).
        match std::process::Command::new("openssl")
            .args(["pkey", "-noout", "-text", "-in"])
            .arg(files.jwt_key())
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "openssl pkey: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("openssl not run ({e}); skipping that check"),
        }
    }

    #[test]
    fn token_keys_of_the_old_format_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let files = init(&dir.path().join("state"), &[]).unwrap().files;
        // What earlier versions wrote: ring's PKCS#8 v2 document.
        let old = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let old_pem = old.serialize_pem();
        assert!(pem_der(&old_pem, "PRIVATE KEY").len() > 48, "a v2 document");
        std::fs::remove_file(files.jwt_key()).unwrap();
        std::fs::remove_file(files.jwt_pub()).unwrap();
        write_private(&files.jwt_key(), old_pem.as_bytes()).unwrap();
        write_private(&files.jwt_pub(), old.public_key_pem().as_bytes()).unwrap();
        jsonwebtoken::EncodingKey::from_ed_pem(old_pem.as_bytes()).expect("jsonwebtoken reads it");
        tokens_work(&files);
    }

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
