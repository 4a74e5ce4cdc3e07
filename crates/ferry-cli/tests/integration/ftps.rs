//! FTPS with the clients people use, the protections it gives, and its refusals.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{
    ALICE_PASSWORD, FerryServer, RawControl, RecordingProxy, curl, free_port, random_bytes, run,
    run_ok, standard_config,
};

const MINUTE: Duration = Duration::from_secs(60);

fn code(reply: &str) -> &str {
    &reply[..3]
}

#[test]
fn curl_explicit_and_implicit() {
    let server = FerryServer::start_with(&standard_config("").replace(
        "[anonymous]",
        "[tls]\nimplicit_listen = [\"127.0.0.1:0\"]\n\n[anonymous]",
    ));
    let work = tempfile::tempdir().expect("tmp");
    let body = random_bytes(1_500_000, 21);
    let src = work.path().join("src.bin");
    std::fs::write(&src, &body).expect("src");
    let explicit = format!("ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/", server.port());
    // Explicit: AUTH TLS, PROT P, data channels resuming the control session.
    let src_arg = src.to_str().expect("path");
    run_ok(
        &mut curl(
            &["--ssl-reqd", "-k", "-T", src_arg],
            format!("{explicit}up.bin"),
        ),
        MINUTE,
    );
    assert_eq!(
        std::fs::read(server.files().join("alice/up.bin")).expect("uploaded"),
        body
    );
    let out = run(
        &mut curl(&["--ssl-reqd", "-k"], format!("{explicit}up.bin")),
        MINUTE,
    );
    assert!(out.status.success() && out.stdout == body);
    let list = run_ok(&mut curl(&["--ssl-reqd", "-k"], explicit.clone()), MINUTE);
    assert!(list.contains(" up.bin"), "{list}");
    // TLS 1.2: data connections resume by session ID, which reuse checking accepts.
    let out = run(
        &mut curl(
            &["--ssl-reqd", "-k", "--tls-max", "1.2"],
            format!("{explicit}up.bin"),
        ),
        MINUTE,
    );
    assert!(
        out.status.success() && out.stdout == body,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server's cipher order wins: a client that prefers AES-256-GCM gets
    // AES-128-GCM (without AES instructions ferry puts ChaCha20 first, which
    // this client does not offer, so the answer is the same).
    let out = run(
        &mut curl(
            &[
                "--ssl-reqd",
                "-k",
                "-v",
                "--tls13-ciphers",
                "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
            ],
            format!("{explicit}up.bin"),
        ),
        MINUTE,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && out.stdout == body, "{log}");
    let suites: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SSL connection using"))
        .collect();
    assert!(
        suites.len() >= 2 && suites.iter().all(|l| l.ends_with("TLS_AES_128_GCM_SHA256")),
        "control and data connections: {suites:?}"
    );
    // Implicit, checking the certificate against the generated one as CA.
    let cert = server.dir.path().join("ferry-data/tls/cert.pem");
    let implicit = format!(
        "ftps://alice:{ALICE_PASSWORD}@localhost:{}/up.bin",
        server.implicit_addr().port()
    );
    let out = run(
        &mut curl(
            &["--cacert", cert.to_str().expect("path")],
            implicit.clone(),
        ),
        MINUTE,
    );
    assert!(
        out.status.success() && out.stdout == body,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without -k or the CA, curl refuses the self-signed certificate.
    let out = run(&mut curl(&[], implicit), MINUTE);
    assert!(!out.status.success());
    // The fingerprint is printed for pinning.
    assert!(
        server
            .log()
            .contains("TLS certificate SHA-256 fingerprint ")
    );
}

#[test]
fn lftp_with_forced_tls() {
    let server = FerryServer::start();
    let work = tempfile::tempdir().expect("tmp");
    let body = random_bytes(800_000, 22);
    std::fs::write(work.path().join("put.bin"), &body).expect("put");
    let script = format!(
        "set ssl:verify-certificate no; set ftp:ssl-force true; set ftp:ssl-protect-data true; set net:max-retries 1; \
         open ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}; lcd {}; put put.bin; get put.bin -o got.bin; ls",
        server.port(),
        work.path().display()
    );
    let out = run_ok(Command::new("lftp").args(["-c", &script]), MINUTE);
    assert!(out.contains("put.bin"), "{out}");
    assert_eq!(
        std::fs::read(work.path().join("got.bin")).expect("got"),
        body
    );
    assert_eq!(
        std::fs::read(server.files().join("alice/put.bin")).expect("stored"),
        body
    );
}

const FTPLIB_TLS: &str = r#"
import ftplib, io, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
f = ftplib.FTP_TLS(context=ctx, timeout=30)
f.connect("127.0.0.1", int(sys.argv[1]))
f.login("alice", "alice-pw")
f.prot_p()
try:
    f.storbinary("STOR tls.txt", io.BytesIO(b"over tls"))
    buf = io.BytesIO(); f.retrbinary("RETR tls.txt", buf.write)
    assert buf.getvalue() == b"over tls"
    assert "tls.txt" in f.nlst()
    print("transfers OK")
except Exception:
    # The refused data connection breaks first; the reply says why.
    try:
        reply = f.getresp()
    except ftplib.all_errors as e:
        reply = str(e)
    print("refused:", reply)
"#;

#[test]
fn session_reuse_is_required_unless_exempt() {
    // Python's ftplib cannot resume the control session on data connections.
    let strict = FerryServer::start();
    let out = run_ok(
        Command::new("python3").args(["-c", FTPLIB_TLS, &strict.port().to_string()]),
        MINUTE,
    );
    assert!(
        out.starts_with("refused: 522") && out.contains("reuse"),
        "{out}"
    );
    let exempt = FerryServer::start_with(&standard_config("").replace(
        "[anonymous]",
        "[tls]\nsession_reuse_exempt = [\"127.0.0.1/32\"]\n\n[anonymous]",
    ));
    let out = run_ok(
        Command::new("python3").args(["-c", FTPLIB_TLS, &exempt.port().to_string()]),
        MINUTE,
    );
    assert_eq!(out.trim(), "transfers OK");
    let relaxed = FerryServer::start_with(&standard_config("").replace(
        "[anonymous]",
        "[tls]\nrequire_session_reuse = false\n\n[anonymous]",
    ));
    let out = run_ok(
        Command::new("python3").args(["-c", FTPLIB_TLS, &relaxed.port().to_string()]),
        MINUTE,
    );
    assert_eq!(out.trim(), "transfers OK");
}

/// ABOR and REST over PROT P: binary downloads of local files run as a
/// blocking TLS loop, which ABOR must stop without ending the session, and
/// which must start at the REST offset. Python's ftplib, taught to resume the
/// control session on data connections (the stock one cannot).
#[test]
fn abort_and_resume_under_tls() {
    let server = FerryServer::start();
    let body = random_bytes(40_000_000, 31);
    std::fs::write(server.files().join("alice/big.bin"), &body).expect("big");
    let script = r#"
import ftplib, hashlib, ssl, sys
class Reuse(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
f = Reuse(context=ctx, timeout=30)
f.connect("127.0.0.1", int(sys.argv[1]))
f.login("alice", "alice-pw")
f.prot_p()
conn = f.transfercmd("RETR big.bin")
first = conn.recv(65536)
print("first", len(first) > 0)
print("abort", f.abort()[:3])
print("then", f.getresp()[:3])
conn.close()
print("noop", f.voidcmd("NOOP")[:3])
h = hashlib.sha256()
print("rest", f.retrbinary("RETR big.bin", h.update, rest=12345)[:3])
with open(sys.argv[2], "rb") as stored:
    stored.seek(12345)
    print("same as stored from 12345", h.hexdigest() == hashlib.sha256(stored.read()).hexdigest())
# ABOR in the middle of an upload that replaces the file: the old file stays.
up = f.transfercmd("STOR big.bin")
up.sendall(b"x" * 1000000)
print("abort upload", f.abort()[:3])
print("then", f.getresp()[:3])
up.close()
print("noop", f.voidcmd("NOOP")[:3])
"#;
    let big = server.files().join("alice/big.bin");
    let out = run_ok(
        Command::new("python3").args([
            "-c",
            script,
            &server.port().to_string(),
            big.to_str().expect("path"),
        ]),
        MINUTE,
    );
    assert_eq!(
        out,
        "first True\nabort 426\nthen 226\nnoop 200\nrest 226\nsame as stored from 12345 True\n\
         abort upload 426\nthen 226\nnoop 200\n"
    );
    assert_eq!(
        std::fs::read(&big).expect("big"),
        body,
        "the file is untouched by the aborted download and the aborted upload"
    );
}

#[test]
fn required_tls_and_command_sequence() {
    let server = FerryServer::start_with(&standard_config("").replace(
        "[anonymous]",
        "[tls]\nexplicit = \"required\"\n\n[anonymous]",
    ));
    let mut c = RawControl::connect(&server);
    let feat = c.cmd("FEAT");
    assert!(
        feat.contains(" AUTH TLS") && feat.contains(" PBSZ") && feat.contains(" PROT"),
        "{feat}"
    );
    assert_eq!(
        code(&c.cmd("USER alice")),
        "530",
        "USER before AUTH must be refused"
    );
    assert_eq!(code(&c.cmd("PBSZ 0")), "503");
    assert_eq!(code(&c.cmd("PROT P")), "503");
    assert_eq!(code(&c.cmd("AUTH KERBEROS")), "504");
    // The rest needs TLS: curl does it, and a transfer without PROT P is refused.
    let ok = run(
        &mut curl(
            &["--ssl-reqd", "-k"],
            format!("ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/", server.port()),
        ),
        MINUTE,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let script = r#"
import ftplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
f = ftplib.FTP_TLS(context=ctx, timeout=30)
f.connect("127.0.0.1", int(sys.argv[1]))
f.login("alice", "alice-pw")
try:
    f.nlst()
    print("listed without PROT P")
except ftplib.error_perm as e:
    print(e)
f.prot_p()
try:
    f.sendcmd("PROT C")
except ftplib.error_perm as e:
    print(e)
try:
    f.sendcmd("CCC")
except ftplib.error_perm as e:
    print(e)
"#;
    let out = run_ok(
        Command::new("python3").args(["-c", script, &server.port().to_string()]),
        MINUTE,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("521"), "{out}");
    assert!(lines[1].starts_with("534"), "{out}");
    assert!(lines[2].starts_with("534"), "{out}");
}

/// Relays a session through a recording proxy and looks for secrets in what
/// crossed: a PROT P session shows neither the password nor the file content; a
/// plain one shows both (so the check can fail).
#[test]
fn recorded_traffic_shows_no_secrets_under_tls() {
    for tls in [true, false] {
        // The server listens on 127.0.0.2 with one passive port; the proxy listens
        // on 127.0.0.1 with the same ports and connects from 127.0.0.1.
        // The 127.0.0.1 side stays bound from here on: the data relay takes it.
        let (data_listener, port) = loop {
            let p = free_port();
            if let (Ok(listener), Ok(_)) = (
                std::net::TcpListener::bind(("127.0.0.1", p)),
                std::net::TcpListener::bind(("127.0.0.2", p)),
            ) {
                break (listener, p);
            }
        };
        let config = standard_config(&format!(
            "passive_ports = \"{port}-{port}\"\nmax_connections_per_ip = 100"
        ))
        .replace("listen = [\"127.0.0.1:0\"]", "listen = [\"127.0.0.2:0\"]");
        let server = FerryServer::start_with(&config);
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let control = RecordingProxy::start(
            std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind"),
            server.addr,
            [127, 0, 0, 1],
            recorded.clone(),
        );
        let _data = RecordingProxy::start(
            data_listener,
            SocketAddr::from(([127, 0, 0, 2], port)),
            [127, 0, 0, 1],
            recorded.clone(),
        );
        let work = tempfile::tempdir().expect("tmp");
        let marker = b"TOP-SECRET-CONTENT-0123456789".repeat(1000);
        let src = work.path().join("secret.txt");
        std::fs::write(&src, &marker).expect("src");
        let url = format!(
            "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}/secret.txt",
            control.addr.port()
        );
        let tls_args: &[&str] = if tls {
            &["--ssl-reqd", "-k", "--ftp-pasv"]
        } else {
            &["--ftp-pasv"]
        };
        let mut up_args = tls_args.to_vec();
        up_args.extend(["-T", src.to_str().expect("path")]);
        run_ok(&mut curl(&up_args, url.clone()), MINUTE);
        let down = run(&mut curl(tls_args, url), MINUTE);
        assert!(
            down.status.success() && down.stdout == marker,
            "{}",
            String::from_utf8_lossy(&down.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
        let bytes = recorded.lock().expect("recorded").clone();
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(
            bytes.len() > marker.len(),
            "the proxy carried the session ({} bytes)",
            bytes.len()
        );
        assert_eq!(
            contains(ALICE_PASSWORD.as_bytes()),
            !tls,
            "password in clear: tls={tls}"
        );
        assert_eq!(
            contains(b"TOP-SECRET-CONTENT"),
            !tls,
            "file content in clear: tls={tls}"
        );
    }
}

/// A self-signed certificate for localhost, made by openssl.
fn openssl_cert(cert: &std::path::Path, key: &std::path::Path) {
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
            ])
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(cert),
        MINUTE,
    );
}

#[test]
fn certificate_files_min_version_and_reload() {
    let dir = tempfile::tempdir().expect("tmp");
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).expect("tls dir");
    let (a_cert, a_key) = (dir.path().join("a.pem"), dir.path().join("a.key"));
    let (b_cert, b_key) = (dir.path().join("b.pem"), dir.path().join("b.key"));
    openssl_cert(&a_cert, &a_key);
    openssl_cert(&b_cert, &b_key);
    std::fs::copy(&a_cert, tls.join("cert.pem")).expect("cert");
    std::fs::copy(&a_key, tls.join("key.pem")).expect("key");
    let config = standard_config("").replace(
        "[anonymous]",
        "[tls]\ncertificate = \"tls/cert.pem\"\nprivate_key = \"tls/key.pem\"\nmin_version = \"1.3\"\nimplicit_listen = [\"127.0.0.1:0\"]\n\n[anonymous]",
    );
    std::fs::write(dir.path().join("ferry.toml"), config).expect("config");
    let server = crate::support::serve_in(dir);
    let url = format!(
        "ftps://alice:{ALICE_PASSWORD}@localhost:{}/",
        server.implicit_addr().port()
    );
    let list_with = |ca: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["--cacert", ca.to_str().expect("path")];
        args.extend_from_slice(extra);
        run(&mut curl(&args, url.clone()), MINUTE).status.success()
    };
    let d = server.dir.path();
    let (a_cert, b_cert) = (d.join("a.pem"), d.join("b.pem"));
    assert!(
        list_with(&a_cert, &[]),
        "the configured certificate is served"
    );
    assert!(!list_with(&b_cert, &[]), "another CA must not verify it");
    assert!(
        !list_with(&a_cert, &["--tls-max", "1.2"]),
        "TLS 1.2 is below min_version"
    );
    // Replace the files and send SIGHUP: new connections get the new certificate.
    std::fs::copy(d.join("b.pem"), d.join("tls/cert.pem")).expect("cert");
    std::fs::copy(d.join("b.key"), d.join("tls/key.pem")).expect("key");
    server.signal("HUP");
    server.wait_for_log("TLS certificate reloaded");
    assert!(
        list_with(&b_cert, &[]),
        "the new certificate is served after SIGHUP"
    );
    assert!(!list_with(&a_cert, &[]));
    // A broken file on reload keeps the old certificate.
    std::fs::write(d.join("tls/cert.pem"), b"not a certificate").expect("garbage");
    server.signal("HUP");
    server.wait_for_log("not reloaded");
    assert!(
        list_with(&b_cert, &[]),
        "a failed reload keeps the certificate in use"
    );
}
