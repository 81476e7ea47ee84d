//! Transport security: a process's credentials from the trust directory,
//! the rustls server configuration of a downstream service (client
//! certificates asked for and verified against the stack's authority), the
//! client configuration a BFF calls with, and what a server learns about
//! each connection ([`Connection`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::TrustError;
use crate::authority::TrustFiles;
use crate::identity::IdentitySigner;

/// What a server knows about the connection a request came on; the server
/// puts it in every request's extensions.
#[derive(Debug, Clone)]
pub enum Connection {
    /// No TLS.
    Plaintext,
    /// TLS, with the client's verified certificate if it sent one.
    Tls(Option<Arc<Peer>>),
}

/// A client whose certificate chains to the stack's authority.
pub struct Peer {
    names: Vec<String>,
    /// The certificate's P-256 public key as an uncompressed point.
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("names", &self.names).finish()
    }
}

impl Peer {
    /// The peer a (verified) certificate describes; `None` if it does not
    /// parse.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Option<Peer> {
        let cert = webpki::EndEntityCert::try_from(der).ok()?;
        let names = cert.valid_dns_names().map(str::to_owned).collect();
        let key = p256_point(cert.subject_public_key_info().as_ref()).map(<[u8]>::to_vec);
        Some(Peer { names, key })
    }

    /// The peer of a PEM certificate (tests and tools).
    pub fn from_pem(pem: &str) -> Option<Peer> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
        Self::from_certificate(&der)
    }

    /// The DNS names the certificate is valid for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The first of `allowed` the certificate names.
    pub fn named<'a>(&self, allowed: &'a [String]) -> Option<&'a str> {
        allowed
            .iter()
            .find(|name| self.names.contains(name))
            .map(String::as_str)
    }

    /// The certificate's public key, for identity tokens.
    pub(crate) fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
}

/// The DER of a P-256 public key's SubjectPublicKeyInfo up to its point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66
/// bytes, no unused bits) }. DER has one encoding for each value, so every
/// P-256 key's SubjectPublicKeyInfo starts with exactly these bytes.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The uncompressed point (`04 || x || y`) of a P-256 SubjectPublicKeyInfo;
/// `None` for a key of another kind.
fn p256_point(spki: &[u8]) -> Option<&[u8]> {
    let point = spki.strip_prefix(&P256_SPKI_PREFIX)?;
    (point.len() == 65 && point[0] == 0x04).then_some(point)
}

/// One process's credentials: the authority it trusts and its own
/// certificate and key.
#[derive(Clone)]
pub struct MeshCredentials {
    name: String,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for MeshCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCredentials")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn read(path: std::path::PathBuf) -> Result<Vec<u8>, TrustError> {
    std::fs::read(&path).map_err(|source| TrustError::File { path, source })
}

impl MeshCredentials {
    /// `name`'s credentials from the trust directory.
    pub fn load(files: &TrustFiles, name: &str) -> Result<Self, TrustError> {
        Ok(Self {
            name: name.to_owned(),
            ca: read(files.ca_cert())?,
            cert: read(files.cert(name))?,
            key: read(files.key(name))?,
        })
    }

    /// The process these credentials are for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server side of a downstream service: presents this process's
    /// certificate, offers HTTP/2 and HTTP/1.1, and asks clients for a
    /// certificate issued by the authority. A client without one still
    /// completes the handshake, so that it can be told why it is refused in
    /// a gRPC status.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TrustError> {
        server_config(&self.cert, &self.key, Some(&self.ca))
    }

    /// The client side, for calling the process `server`: trusts the
    /// authority only, expects the certificate to name `server`, and
    /// presents this process's certificate.
    pub fn client_tls(&self, server: &str) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca))
            .identity(tonic::transport::Identity::from_pem(&self.cert, &self.key))
            .domain_name(server)
            .assume_http2(true)
    }

    /// A signer of identity tokens with this process's key.
    pub fn signer(&self) -> Result<IdentitySigner, TrustError> {
        IdentitySigner::new(&self.name, &self.key)
    }
}

/// A TLS server configuration presenting `cert` (PEM chain) with `key`,
/// offering HTTP/2 and HTTP/1.1; with `client_ca`, clients are asked for a
/// certificate that chains to it (and admitted without one, for a clear
/// refusal later).
pub fn server_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>, TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TrustError::invalid)?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(ca.map_err(TrustError::invalid)?)
                    .map_err(TrustError::invalid)?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(TrustError::invalid)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TrustError::invalid)?;
    if chain.is_empty() {
        return Err(TrustError::invalid(
            "the certificate file holds no certificate",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(TrustError::invalid)?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(TrustError::invalid)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection as accepted: TLS or, when the client spoke plaintext to a
/// TLS port, plaintext (answered with a clear refusal, not a reset).
pub type Accepted = tokio_util::either::Either<TlsStream<Socket>, Socket>;

/// The socket under `accepted`, TLS or not.
pub fn socket_of(accepted: &mut Accepted) -> &mut Socket {
    match accepted {
        tokio_util::either::Either::Left(tls) => tls.get_mut().0,
        tokio_util::either::Either::Right(socket) => socket,
    }
}

/// An accepted TCP connection that can move to another runtime between
/// reads: [`detach`](Self::detach) it from the runtime that accepted it
/// (and did the TLS handshake), send it, and [`attach`](Self::attach) it
/// inside the runtime that serves it. Detached, it reads and writes
/// nothing.
#[derive(Debug)]
pub struct Socket {
    attached: Option<TcpStream>,
    detached: Option<std::net::TcpStream>,
}

impl From<TcpStream> for Socket {
    fn from(stream: TcpStream) -> Self {
        Self {
            attached: Some(stream),
            detached: None,
        }
    }
}

impl Socket {
    /// Leaves the runtime the socket is registered with.
    pub fn detach(&mut self) -> std::io::Result<()> {
        if let Some(stream) = self.attached.take() {
            self.detached = Some(stream.into_std()?);
        }
        Ok(())
    }

    /// Registers the socket with the current runtime; call it inside the
    /// runtime that is to serve the connection.
    pub fn attach(&mut self) -> std::io::Result<()> {
        if let Some(stream) = self.detached.take() {
            self.attached = Some(TcpStream::from_std(stream)?);
        }
        Ok(())
    }

    fn stream(self: Pin<&mut Self>) -> std::io::Result<Pin<&mut TcpStream>> {
        match self.get_mut().attached.as_mut() {
            Some(stream) => Ok(Pin::new(stream)),
            None => Err(std::io::Error::other("the socket is detached")),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts `stream` on a TLS port: a TLS handshake when the client starts
/// one, plaintext otherwise. A client that says nothing for `timeout` (at
/// most ten seconds) is dropped.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> std::io::Result<(Accepted, Connection)> {
    let timeout = timeout.min(HANDSHAKE_TIMEOUT);
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(timeout, stream.peek(&mut first)).await;
    match peeked {
        Ok(Ok(1)) if first[0] == 0x16 => {}
        Ok(Ok(_)) => return Ok((Accepted::Right(stream.into()), Connection::Plaintext)),
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    }
    let tls = tokio::time::timeout(timeout, acceptor.accept(Socket::from(stream)))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(Peer::from_certificate)
        .map(Arc::new);
    Ok((Accepted::Left(tls), Connection::Tls(peer)))
}

/// An acceptor for `config`.
pub fn acceptor(config: Arc<rustls::ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}
