//! How nodes join: one-time join tokens, and node certificates signed by
//! the cluster CA from the node's own certificate request.
//!
//! A join token is 32 random bytes (`pjt_<hex>`). The head keeps only its
//! sha256 with an expiry (in `head.redb`) and forgets it when a node joins
//! with it, so a token admits one node once. The node makes its own key
//! and sends a certificate request; the head signs it with the node id as
//! its subject and `<node id>.node.prism` as its only name. From then on
//! the node proves who it is with that certificate (mutual TLS): the head
//! and the other nodes read the id from the certificate, not from
//! requests, and a node dialling another checks that name, so a
//! certificate proves one node id and no host: it cannot pass for the
//! head (whose certificate names its hosts) or for another node.

use super::SecurityError;
use super::pki::{ClusterFiles, this_year};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, Issuer,
    KeyPair,
};
use sha2::Digest;

/// Prefix of join tokens.
const JOIN_PREFIX: &str = "pjt_";

/// Node certificates are valid for 2 years from the start of this year.
const NODE_YEARS: i32 = 2;

/// A new join token and the digest the head stores for it.
pub fn new_join_token() -> Result<(String, String), SecurityError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| SecurityError::Token(e.to_string()))?;
    let token = format!("{JOIN_PREFIX}{}", hex::encode(secret));
    let digest = join_token_digest(&token);
    Ok((token, digest))
}

/// The digest under which the head stores `token` (hex sha256).
pub fn join_token_digest(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.trim().as_bytes()))
}

/// The cluster CA, able to sign node certificates (the head holds it).
pub struct NodeAuthority {
    issuer: Issuer<'static, KeyPair>,
}

impl NodeAuthority {
    /// Loads the CA from the state directory.
    pub fn load(files: &ClusterFiles) -> Result<Self, SecurityError> {
        let cert = String::from_utf8_lossy(&files.read(&files.ca_cert())?).into_owned();
        let key = String::from_utf8_lossy(&files.read(&files.ca_key())?).into_owned();
        let key = KeyPair::from_pem(&key).map_err(|e| SecurityError::Pki(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert, key)
            .map_err(|e| SecurityError::Pki(format!("ca.pem: {e}")))?;
        Ok(NodeAuthority { issuer })
    }

    /// Signs the node's certificate request: subject `node_id`, name
    /// [`node_server_name`], for both server and client use. Only the
    /// request's public key is used; everything else is the head's choice.
    pub fn sign_node(&self, csr_pem: &str, node_id: &str) -> Result<String, SecurityError> {
        let pki = |e: rcgen::Error| SecurityError::Pki(e.to_string());
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| SecurityError::Pki(format!("certificate request: {e}")))?;
        let mut params = CertificateParams::new(vec![node_server_name(node_id)]).map_err(pki)?;
        params.distinguished_name.push(DnType::CommonName, node_id);
        let year = this_year();
        params.not_before = rcgen::date_time_ymd(year, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + NODE_YEARS, 1, 1);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        csr.params = params;
        Ok(csr.signed_by(&self.issuer).map_err(pki)?.pem())
    }
}

/// The one name a node's certificate is valid for: `<node id>.node.prism`.
/// Nodes dial each other by address and check this name.
pub fn node_server_name(node_id: &str) -> String {
    format!("{node_id}.node.prism")
}

/// A node's new key and its certificate request (PEM).
pub fn node_key_and_request() -> Result<(String, String), SecurityError> {
    let pki = |e: rcgen::Error| SecurityError::Pki(e.to_string());
    let key = KeyPair::generate().map_err(pki)?;
    let params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    let request = params.serialize_request(&key).map_err(pki)?;
    Ok((key.serialize_pem(), request.pem().map_err(pki)?))
}

/// The subject common name of a DER certificate: the node id of a node
/// certificate, "prism head" for the head's.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_request_is_signed_with_the_heads_choice_of_subject() {
        let dir = tempfile::tempdir().unwrap();
        let report = super::super::init(&dir.path().join("s"), &[]).unwrap();
        let ca = NodeAuthority::load(&report.files).unwrap();
        let (_key, csr) = node_key_and_request().unwrap();
        let pem = ca.sign_node(&csr, "node-00ff").unwrap();
        let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        assert_eq!(
            certificate_subject(&der.contents).as_deref(),
            Some("node-00ff")
        );
        // Named for its node only: no host, so it cannot pass for the head.
        let (_, parsed) = x509_parser::parse_x509_certificate(&der.contents).unwrap();
        let names: Vec<String> = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, vec!["DNSName(node-00ff.node.prism)".to_string()]);
        assert!(ca.sign_node("not a request", "node-1").is_err());
    }

    #[test]
    fn join_tokens_are_random_and_digested() {
        let (a, da) = new_join_token().unwrap();
        let (b, db) = new_join_token().unwrap();
        assert_ne!(a, b);
        assert_ne!(da, db);
        assert_eq!(join_token_digest(&a), da);
        assert_eq!(join_token_digest(&format!("{a}\n")), da);
        assert!(a.starts_with(JOIN_PREFIX));
    }
}
