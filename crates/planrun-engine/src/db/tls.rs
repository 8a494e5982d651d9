//! TLS as libpq does it, from the resolved `ssl*` settings.
//!
//! - `disable`: plaintext. `allow` and `prefer`: TLS when the server offers it
//!   (planrun tries TLS first for `allow` too, which is only ever stronger).
//! - The server's chain is verified when `sslmode` is `verify-ca` or `verify-full`,
//!   and, as in libpq, whenever the root certificate file exists (`sslrootcert`, by
//!   default `~/.postgresql/root.crt`), even with `require` or `prefer`. `verify-*`
//!   without that file is an error, never a silent fall-back to no verification.
//! - The chain is verified against exactly what libpq trusts: the certificates in
//!   that file, never the operating system's store on top of them (a certificate
//!   any public CA issued would pass). `sslrootcert=system` means the system's
//!   store, and then `verify-full`, as in libpq 16 (resolution enforces it).
//! - Over a Unix socket there is no TLS, whatever `sslmode` says, as in libpq (the
//!   server offers none there). A server named by `hostaddr` alone has no host name:
//!   no SNI, and `verify-full`, which has nothing to check, is refused.
//! - `verify-full` also checks the host name; `sslsni` (a value starting with 1, as
//!   libpq reads it) sends it; a client certificate
//!   (`sslcert`/`sslkey`, by default in `~/.postgresql/`) is presented when its file
//!   exists, and its key must be private (0600, or 0640 when owned by root);
//!   `ssl_min_protocol_version`/`ssl_max_protocol_version` bound the TLS version.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::X509;
use planrun_conninfo::{Endpoint, Resolved};
use postgres::config::SslMode;
use postgres::{Client, Config};
use postgres_openssl::MakeTlsConnector;

use crate::error::error_chain;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// How a connection speaks TLS.
/// What the server's chain is verified against.
#[derive(Debug, Clone)]
enum Roots {
    /// The certificates in this file, and nothing else.
    File(PathBuf),
    /// The operating system's trusted roots (`sslrootcert=system`).
    System,
}

#[derive(Debug, Clone)]
pub(crate) struct Tls {
    mode: Mode,
    /// The root certificates to verify the server against, when verifying.
    roots: Option<Roots>,
    /// Certificate and key to present.
    client: Option<(PathBuf, PathBuf)>,
    sni: bool,
    min_version: Option<SslVersion>,
    max_version: Option<SslVersion>,
}

impl Tls {
    pub(crate) fn from_settings(resolved: &Resolved) -> Result<Tls, String> {
        let mode = match resolved.get("sslmode").unwrap_or("prefer") {
            "disable" => Mode::Disable,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            _ => Mode::Prefer,
        };
        let roots = match resolved.get("sslrootcert") {
            Some("system") => Some(Roots::System),
            file => file
                .map(PathBuf::from)
                .filter(|file| file.exists())
                .map(Roots::File),
        };
        if roots.is_none() && matches!(mode, Mode::VerifyCa | Mode::VerifyFull) {
            return Err(format!(
                "sslmode={} needs a root certificate file: set sslrootcert (or PGSSLROOTCERT), or put it at ~/.postgresql/root.crt{}",
                resolved.get("sslmode").unwrap_or_default(),
                resolved
                    .get("sslrootcert")
                    .map(|file| format!("; \"{file}\" does not exist"))
                    .unwrap_or_default()
            ));
        }
        let client = match (resolved.get("sslcert"), resolved.get("sslkey")) {
            (Some(cert), Some(key)) if Path::new(cert).exists() => {
                check_private_key(Path::new(key))?;
                Some((PathBuf::from(cert), PathBuf::from(key)))
            }
            (Some(cert), None) if Path::new(cert).exists() => {
                return Err(format!(
                    "certificate \"{cert}\" present, but no private key file (sslkey)"
                ))
            }
            _ => None,
        };
        Ok(Tls {
            mode,
            roots,
            client,
            sni: resolved
                .get("sslsni")
                .is_some_and(|sni| sni.starts_with('1')),
            min_version: resolved.get("ssl_min_protocol_version").map(version),
            max_version: resolved.get("ssl_max_protocol_version").map(version),
        })
    }

    /// Connects with `config` to `endpoint` over this TLS setting; errors are plain
    /// text for the caller to redact.
    pub(crate) fn connect(
        &self,
        mut config: Config,
        endpoint: &Endpoint,
    ) -> Result<Client, String> {
        let over_socket = endpoint.hostaddr.is_none()
            && endpoint
                .host
                .as_deref()
                .is_none_or(|host| host.starts_with('/'));
        if self.mode == Mode::Disable || over_socket {
            config.ssl_mode(SslMode::Disable);
            return config
                .connect(postgres::NoTls)
                .map_err(|error| error_chain(&error));
        }
        let mut sni = self.sni;
        if let (None, Some(address)) = (&endpoint.host, &endpoint.hostaddr) {
            if self.mode == Mode::VerifyFull {
                return Err(format!(
                    "sslmode=verify-full needs a host name to check the server's certificate against; hostaddr={address} alone gives none (set host too)"
                ));
            }
            // The driver starts TLS only with a host name; the address stands in,
            // never checked (not verify-full) and never sent (no SNI).
            config.host(address);
            sni = false;
        }
        let connector = self.connector(sni)?;
        config.ssl_mode(match self.mode {
            Mode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        config
            .connect(connector)
            .map_err(|error| error_chain(&error))
    }

    /// Asks the server to cancel the statement running on `token`'s session, over
    /// the same TLS setting.
    pub(crate) fn cancel(&self, token: &postgres::CancelToken) -> Result<(), String> {
        let result = if self.mode == Mode::Disable {
            token.cancel_query(postgres::NoTls)
        } else {
            token.cancel_query(self.connector(self.sni)?)
        };
        result.map_err(|error| error_chain(&error))
    }

    fn connector(&self, sni: bool) -> Result<MakeTlsConnector, String> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())
            .map_err(|error| format!("cannot set up TLS: {error}"))?;
        // The builder starts from the system's default store; replacing the store
        // is what keeps it out unless asked for.
        builder.set_cert_store(trusted_roots(self.roots.as_ref())?);
        builder.set_verify(match self.roots {
            Some(_) => SslVerifyMode::PEER,
            None => SslVerifyMode::NONE,
        });
        if let Some((cert, key)) = &self.client {
            builder
                .set_certificate_chain_file(cert)
                .map_err(|error| format!("cannot read sslcert {}: {error}", cert.display()))?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(|error| format!("cannot read sslkey {}: {error}", key.display()))?;
        }
        builder
            .set_min_proto_version(self.min_version)
            .and_then(|()| builder.set_max_proto_version(self.max_version))
            .map_err(|error| format!("cannot bound the TLS version: {error}"))?;
        let mut connector = MakeTlsConnector::new(builder.build());
        let verify_hostname = self.mode == Mode::VerifyFull;
        connector.set_callback(move |connect, _| {
            connect.set_verify_hostname(verify_hostname);
            connect.set_use_server_name_indication(sni);
            Ok(())
        });
        Ok(connector)
    }
}

/// A store holding exactly the roots libpq would trust.
fn trusted_roots(roots: Option<&Roots>) -> Result<X509Store, String> {
    let mut store =
        X509StoreBuilder::new().map_err(|error| format!("cannot set up TLS: {error}"))?;
    match roots {
        Some(Roots::File(file)) => {
            let unreadable = |error: &dyn std::fmt::Display| {
                format!("cannot read sslrootcert {}: {error}", file.display())
            };
            let pem = std::fs::read(file).map_err(|error| unreadable(&error))?;
            for cert in X509::stack_from_pem(&pem).map_err(|error| unreadable(&error))? {
                store.add_cert(cert).map_err(|error| unreadable(&error))?;
            }
        }
        Some(Roots::System) => store
            .set_default_paths()
            .map_err(|error| format!("cannot load the system's trusted roots: {error}"))?,
        None => {}
    }
    Ok(store.build())
}

/// The file of the system's trusted roots that `sslrootcert=system` means, for a
/// libpq tool older than libpq 16, which reads `system` as a file name: OpenSSL's
/// own choice, `SSL_CERT_FILE` or its compiled-in default.
pub(crate) fn system_roots_file() -> Option<PathBuf> {
    // SAFETY: both return pointers to static NUL-terminated strings.
    let (variable, default) = unsafe {
        (
            std::ffi::CStr::from_ptr(openssl_sys::X509_get_default_cert_file_env()),
            std::ffi::CStr::from_ptr(openssl_sys::X509_get_default_cert_file()),
        )
    };
    std::env::var_os(variable.to_str().ok()?)
        .filter(|file| !file.is_empty())
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(default.to_str().ok()?)))
        .filter(|file| file.exists())
}

fn version(name: &str) -> SslVersion {
    match name {
        "TLSv1" => SslVersion::TLS1,
        "TLSv1.1" => SslVersion::TLS1_1,
        "TLSv1.3" => SslVersion::TLS1_3,
        _ => SslVersion::TLS1_2,
    }
}

/// libpq's rule for a client key: no access for others, and for the group only when
/// root owns the file.
fn check_private_key(key: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(key)
        .map_err(|error| format!("cannot read sslkey {}: {error}", key.display()))?;
    let mode = metadata.mode() & 0o777;
    let allowed = if metadata.uid() == 0 { 0o640 } else { 0o600 };
    if mode & !allowed != 0 {
        return Err(format!(
            "private key file \"{}\" has group or world access; it must be u=rw (0600) or less if owned by the current user, or u=rw,g=r (0640) or less if owned by root",
            key.display()
        ));
    }
    Ok(())
}
