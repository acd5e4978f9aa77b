use super::*;

#[test]
fn auth_clients_take_redis_s_words() {
    assert_eq!(ClientAuth::parse("YES"), Ok(ClientAuth::Required));
    assert_eq!(ClientAuth::parse("optional"), Ok(ClientAuth::Optional));
    assert_eq!(ClientAuth::parse("no"), Ok(ClientAuth::Off));
    assert!(ClientAuth::parse("maybe").is_err());
    assert_eq!(ClientAuth::default().name(), "yes");
}

#[test]
fn protocols_are_redis_s_names() {
    use rustls::version::{TLS12, TLS13};
    let versions = suites::protocol_versions("TLSv1.3").unwrap();
    assert_eq!(versions, vec![&TLS13]);
    let versions = suites::protocol_versions("tlsv1.2 TLSv1.3").unwrap();
    assert_eq!(versions, vec![&TLS12, &TLS13]);
    assert_eq!(suites::protocol_versions("").unwrap().len(), 2);
    let error = suites::protocol_versions("TLSv1.1")
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "invalid tls-protocols: 'TLSv1.1' is not supported (use TLSv1.2, TLSv1.3 or both)"
    );
}

#[test]
fn ciphers_take_openssl_and_iana_names_per_version() {
    let all = suites::cipher_suites("", "").unwrap();
    assert_eq!(all.len(), 9);
    let chosen = suites::cipher_suites(
        "TLS_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    )
    .unwrap();
    let names: Vec<_> = chosen
        .iter()
        .map(|s| s.suite().as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "TLS13_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        ]
    );
    // A TLS 1.2 suite is not a TLS 1.3 one.
    let error = suites::cipher_suites("ECDHE-RSA-AES128-GCM-SHA256", "")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("invalid tls-ciphersuites: unknown cipher 'ECDHE-RSA-AES128-GCM-SHA256'"),
        "{error}"
    );
}

#[test]
fn files_are_named_in_errors() {
    let options = TlsOptions {
        cert_file: "/nonexistent/server.crt".into(),
        key_file: "/nonexistent/server.key".into(),
        auth_clients: ClientAuth::Off,
        ..TlsOptions::default()
    };
    let error = options.server_config().unwrap_err().to_string();
    assert!(
        error.starts_with("cannot read the tls-cert-file file /nonexistent/server.crt: "),
        "{error}"
    );
    let error = TlsOptions::default()
        .server_config()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("set tls-cert-file and tls-key-file"),
        "{error}"
    );
}
