//! Certificates and a TLS-serving throwaway cluster for the connection tests, made
//! in Rust with the openssl crate the engine already links, rather than by shelling
//! out to the openssl command.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};
use planrun_tempdb::TempCluster;

use crate::TestDb;

// ---------------------------------------------------------------------------------
// Certificates, made in the test with the openssl crate.

/// A self-signed certificate authority.
pub struct Ca {
    cert: X509,
    key: PKey<Private>,
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut serial = BigNum::new().unwrap();
    serial.rand(120, MsbOption::MAYBE_ZERO, false).unwrap();
    serial.to_asn1_integer().unwrap()
}

fn name(common_name: &str) -> openssl::x509::X509Name {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .unwrap();
    name.build()
}

impl Ca {
    pub fn new(common_name: &str) -> Ca {
        let key = new_key();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_serial_number(&serial()).unwrap();
        let subject = name(common_name);
        cert.set_subject_name(&subject).unwrap();
        cert.set_issuer_name(&subject).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        cert.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        cert.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        Ca {
            cert: cert.build(),
            key,
        }
    }

    /// A server certificate for these DNS names and IP addresses, signed by this CA.
    pub fn server_cert(&self, dns: &[&str], ips: &[&str]) -> (X509, PKey<Private>) {
        let key = new_key();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_serial_number(&serial()).unwrap();
        cert.set_subject_name(&name(dns.first().or(ips.first()).unwrap()))
            .unwrap();
        cert.set_issuer_name(self.cert.subject_name()).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        cert.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        cert.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_agreement()
                .build()
                .unwrap(),
        )
        .unwrap();
        cert.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
            .unwrap();
        let mut names = SubjectAlternativeName::new();
        for dns in dns {
            names.dns(dns);
        }
        for ip in ips {
            names.ip(ip);
        }
        let names = names
            .build(&cert.x509v3_context(Some(&self.cert), None))
            .unwrap();
        cert.append_extension(names).unwrap();
        cert.sign(&self.key, MessageDigest::sha256()).unwrap();
        (cert.build(), key)
    }

    pub fn write(&self, file: &Path) -> PathBuf {
        std::fs::write(file, self.cert.to_pem().unwrap()).unwrap();
        file.to_path_buf()
    }
}

/// A throwaway cluster serving TLS with a certificate from `ca` for `dns`/`ips`,
/// requiring `PASSWORD` over TCP (the Unix socket stays trusted), logging every
/// session it authorizes (with `SSL enabled` for an encrypted one).
pub struct TlsServer {
    pub db: TestDb,
    /// Holds the CA files the tests hand to planrun.
    pub files: tempfile::TempDir,
}

pub const PASSWORD: &str = "Tls/pa?ss-w0rd";
/// The password percent-encoded, as it appears in a well-formed URL.
pub const PASSWORD_ENCODED: &str = "Tls%2Fpa%3Fss-w0rd";
/// A part of the password every leak would show.
pub const LEAK_MARK: &str = "w0rd";

impl TlsServer {
    pub fn start(ca: &Ca, dns: &[&str], ips: &[&str]) -> TlsServer {
        let files = tempfile::tempdir().unwrap();
        let (cert, key) = ca.server_cert(dns, ips);
        let cert_file = files.path().join("server.crt");
        let key_file = files.path().join("server.key");
        std::fs::write(&cert_file, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&key_file, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        ca.write(&files.path().join("ca.pem"));
        let cluster = TempCluster::builder()
            .ssl(&cert_file, &key_file)
            .password(PASSWORD)
            .setting("log_connections", "on")
            .start()
            .expect("a throwaway PostgreSQL with TLS starts");
        let url = cluster.create_database("planrun_test").unwrap();
        TlsServer {
            db: TestDb { cluster, url },
            files,
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.files.path().join("ca.pem")
    }

    /// A URL of `dbname` on `host` with this `sslmode` and, if given, `sslrootcert`.
    pub fn url(&self, dbname: &str, host: &str, sslmode: &str, root_cert: Option<&Path>) -> String {
        let mut url = format!(
            "postgresql://postgres:{PASSWORD_ENCODED}@{host}:{}/{dbname}?sslmode={sslmode}",
            self.db.cluster.port()
        );
        if let Some(file) = root_cert {
            url.push_str(&format!("&sslrootcert={}", file.display()));
        }
        url
    }

    /// A fresh database for one apply, so every mode runs the stage (and the backup).
    pub fn database(&self, name: &str) -> String {
        self.db.cluster.create_database(name).unwrap();
        name.to_owned()
    }

    /// The lines of the server's log that authorized a session of `application`.
    pub fn sessions_of(&self, application: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.db.cluster.log_file()).unwrap();
        log.lines()
            .filter(|line| line.contains("connection authorized"))
            .filter(|line| line.contains(&format!("application_name={application}")))
            .map(str::to_owned)
            .collect()
    }

    /// A query in `dbname` as the superuser, over the trusted Unix socket.
    pub fn scalar(&self, dbname: &str, sql: &str) -> String {
        self.db.cluster.psql(dbname, sql).unwrap().trim().to_owned()
    }
}
