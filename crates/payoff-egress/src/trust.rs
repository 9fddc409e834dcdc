//! Which certificate authorities outbound TLS trusts: the system's bundle
//! plus an operator's PEM bundle (by default the file `SSL_CERT_FILE`
//! names, the convention of OpenSSL, curl and Python).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Where distributions keep their CA bundle, first found wins (the list
/// openssl-probe walks, in its order).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
    "/usr/local/etc/openssl/cert.pem",
];

/// Why the operator's bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("CA bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
}

/// The roots every outbound TLS connection is verified against. Cheap to
/// clone.
#[derive(Clone)]
pub struct Trust {
    roots: Arc<RootCertStore>,
    bundle: Option<PathBuf>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("roots", &self.roots.len())
            .field("bundle", &self.bundle)
            .finish()
    }
}

impl Trust {
    /// The system's roots plus every certificate of `bundle`, which must
    /// be readable PEM holding at least one valid certificate.
    pub fn load(bundle: Option<&Path>) -> Result<Trust, TrustError> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(system_roots().iter().cloned());
        if let Some(path) = bundle {
            let bad = |reason: String| TrustError::Bundle {
                path: path.to_owned(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate in it".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        Ok(Trust {
            roots: Arc::new(roots),
            bundle: bundle.map(Path::to_owned),
        })
    }

    /// The system's roots plus the bundle `SSL_CERT_FILE` names, if set.
    pub fn from_env() -> Result<Trust, TrustError> {
        let bundle = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
        Trust::load(bundle.as_deref().map(Path::new))
    }

    /// [`Trust::from_env`], loaded once per process; when the bundle
    /// cannot be used, the system's roots alone (and a warning). For
    /// defaults only: a binary should call [`Trust::from_env`] and refuse
    /// to start on an error.
    pub fn process_default() -> Trust {
        static DEFAULT: OnceLock<Trust> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                Trust::from_env().unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "ignoring SSL_CERT_FILE");
                    Trust::load(None).expect("no bundle, nothing to fail")
                })
            })
            .clone()
    }

    /// The operator's bundle, when one was given.
    pub fn bundle(&self) -> Option<&Path> {
        self.bundle.as_deref()
    }

    /// How many roots are trusted.
    pub fn roots_len(&self) -> usize {
        self.roots.len()
    }

    /// A rustls client configuration (ring provider, safe defaults).
    pub(crate) fn client_config(&self) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// The system bundle's certificates, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        SYSTEM_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .and_then(|p| CertificateDer::pem_file_iter(p).ok())
            .map(|certs| certs.filter_map(Result::ok).collect())
            .unwrap_or_default()
    })
}
