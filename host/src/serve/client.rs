//! A small HTTPS client on one keep-alive connection (HTTP/1.1 or
//! HTTP/2), trusting the cluster CA: the bench's load generator and the
//! tests call the ingress with it, as any HTTP client would.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

/// Why a request did not get a response.
#[derive(Debug, thiserror::Error)]
#[error("https client: {0}")]
pub struct ClientError(pub String);

fn err(e: impl std::fmt::Display) -> ClientError {
    ClientError(e.to_string())
}

/// A response as the client got it.
#[derive(Clone, Debug)]
pub struct ClientResponse {
    /// Its status.
    pub status: u16,
    /// Its headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Bytes,
}

impl ClientResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One connection to an HTTPS server.
pub struct HttpsClient {
    sender: Sender,
    authority: String,
}

impl HttpsClient {
    /// Connects to `address` ("host:port"), verifying the server's
    /// certificate against `ca_pem` for the name `host`; `http2` picks
    /// HTTP/2 (else HTTP/1.1) by ALPN.
    pub async fn connect(address: &str, ca_pem: &[u8], http2: bool) -> Result<Self, ClientError> {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .trim_matches(['[', ']']);
        Self::connect_named(address, host, ca_pem, http2).await
    }

    /// [`HttpsClient::connect`], verifying the certificate for
    /// `server_name` instead of the address's host (a worker's ingress
    /// presents its node certificate, `<node id>.node.prism`).
    pub async fn connect_named(
        address: &str,
        server_name: &str,
        ca_pem: &[u8],
        http2: bool,
    ) -> Result<Self, ClientError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.map_err(err)?).map_err(err)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(err)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let name = ServerName::try_from(server_name.to_string()).map_err(err)?;
        let tcp = tokio::net::TcpStream::connect(address).await.map_err(err)?;
        tcp.set_nodelay(true).map_err(err)?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(err)?;
        let io = TokioIo::new(tls);
        let sender = if http2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(err)?;
            tokio::spawn(connection);
            Sender::Http2(sender)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(err)?;
            tokio::spawn(connection);
            Sender::Http1(sender)
        };
        Ok(HttpsClient {
            sender,
            authority: address.to_string(),
        })
    }

    /// Sends one request (`target`: path and query) and reads the whole
    /// response.
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<ClientResponse, ClientError> {
        let uri = format!("https://{}{target}", self.authority);
        let mut builder = hyper::Request::builder().method(method).uri(uri);
        if matches!(self.sender, Sender::Http1(_)) {
            builder = builder.header(hyper::header::HOST, self.authority.as_str());
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.into())).map_err(err)?;
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await.map_err(err)?;
                sender.send_request(request).await.map_err(err)?
            }
            Sender::Http2(sender) => {
                sender.ready().await.map_err(err)?;
                sender.send_request(request).await.map_err(err)?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(err)?.to_bytes();
        Ok(ClientResponse {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
        })
    }

    /// `GET target` with a bearer token (if any).
    pub async fn get(
        &mut self,
        target: &str,
        token: Option<&str>,
    ) -> Result<ClientResponse, ClientError> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.send("GET", target, &headers, Bytes::new()).await
    }
}
