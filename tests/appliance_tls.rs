//! Mutual TLS (client certificates required or optional) and JSON logs with the request id
//! on every line of a request.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const BIN: &str = env!("CARGO_BIN_EXE_holdfast");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path, port: u16, extra: &str) -> Proc {
    let config = dir.join("holdfast.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n[storage]\npath = \"{}\"\n[auth]\nmode = \"none\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "holdfast did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(child)
}

/// A client CA and one client certificate it signs, as PEM (CA cert, client cert+key).
fn client_pki() -> (String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "test client CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["builder-01".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "builder-01");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (
        ca_cert.pem(),
        format!("{}{}", leaf_cert.pem(), leaf_key.serialize_pem()),
    )
}

fn client(server_ca: &Path, identity: Option<&str>) -> reqwest::Client {
    let pem = std::fs::read(server_ca).unwrap();
    // reqwest uses rustls' process-wide provider (ring, as holdfast).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(10));
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_required_and_optional() {
    let (client_ca, identity) = client_pki();
    for (mode, anonymous_ok) in [("required", false), ("optional", true)] {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("clients-ca.crt");
        std::fs::write(&ca_path, &client_ca).unwrap();
        let port = free_port();
        let _server = start(
            dir.path(),
            port,
            &format!(
                "[tls]\nclient_ca = \"{}\"\nclient_auth = \"{mode}\"\n",
                ca_path.display()
            ),
        );
        let server_ca = dir.path().join("data/tls/ca.crt");
        let url = format!("https://127.0.0.1:{port}/v2/");

        let with_cert = client(&server_ca, Some(&identity))
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("{mode}: a client certificate from the CA is accepted: {e:?}")
            });
        assert_eq!(with_cert.status(), 200);

        let without = client(&server_ca, None).get(&url).send().await;
        match (anonymous_ok, without) {
            (true, Ok(r)) => assert_eq!(r.status(), 200),
            (true, Err(e)) => panic!("optional mode admits clients without a certificate: {e:?}"),
            (false, Ok(r)) => panic!(
                "required mode answered {} without a certificate",
                r.status()
            ),
            (false, Err(_)) => {}
        }

        // A certificate from another CA is refused in both modes.
        let (_, stranger) = client_pki();
        let r = client(&server_ca, Some(&stranger)).get(&url).send().await;
        assert!(
            r.is_err(),
            "{mode}: a certificate from an unknown CA is refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = start(dir.path(), port, "[log]\nformat = \"json\"\n");
    let r = client(&dir.path().join("data/tls/ca.crt"), None)
        .get(format!("https://127.0.0.1:{port}/v2/nope/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.path().join("log")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect();
        let access = lines.iter().find(|v| {
            v["fields"]["message"] == "access"
                && v["span"]["id"].as_str() == Some(request_id.as_str())
        });
        if let Some(line) = access {
            assert_eq!(line["fields"]["status"], 404);
            assert_eq!(line["level"], "INFO");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no JSON access line with request id {request_id}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
