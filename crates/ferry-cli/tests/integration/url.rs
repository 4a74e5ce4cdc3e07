//! ferry-url and `ferry fetch` against real servers on loopback: an HTTP(S)
//! route server, tinyproxy, Squid, ferry's FTP server and vsftpd, and local files.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_url::{
    Body, Handler, OpenContext, Opener, PasswordManager, Proxies, Request, Response, Unreachable,
    UrlError,
};

use crate::peers::{PeerServer, test_ca};
use crate::support::{ALICE_PASSWORD, FerryServer, ferry_bin, free_port, random_bytes, run};
use crate::web::{HttpServer, Squid, Tinyproxy};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn direct() -> Opener {
    Opener::builder()
        .proxies(Proxies::none())
        .netrc(false)
        .build()
}

async fn echo(opener: &Opener, request: Request) -> serde_json::Value {
    let response = opener.open(request).await.expect("open");
    assert_eq!(response.status, 200);
    serde_json::from_str(&response.text().await.expect("body")).expect("json")
}

fn status_of(result: Result<Response, UrlError>) -> (u16, String, ferry_url::Headers, Response) {
    match result {
        Err(UrlError::Status(e)) => (e.code, e.reason, e.headers, e.body),
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[test]
fn requests_redirects_errors_and_timeouts_over_http() {
    let web = HttpServer::start();
    let b = &web.base;
    let opener = direct();
    rt().block_on(async {
        // Method, headers, bodies of each kind.
        let e = echo(&opener, Request::new(&format!("{b}/echo")).expect("url")).await;
        assert_eq!(e["method"], "GET");
        assert!(
            e["headers"]["user-agent"]
                .as_str()
                .is_some_and(|u| u.starts_with("ferry/")),
            "{e}"
        );
        let r = Request::new(&format!("{b}/echo"))
            .expect("url")
            .with_header("X-Custom", "yes")
            .with_data(ferry_url::urlencode(&[("a", "b c")]));
        let e = echo(&opener, r).await;
        assert_eq!(
            (e["method"].as_str(), e["body"].as_str()),
            (Some("POST"), Some("a=b+c"))
        );
        assert_eq!(e["headers"]["x-custom"], "yes");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("body.txt"), b"from a file").expect("write");
        let r = Request::new(&format!("{b}/echo"))
            .expect("url")
            .with_method("PUT")
            .with_body(Body::File(dir.path().join("body.txt")));
        let e = echo(&opener, r).await;
        assert_eq!(
            (e["method"].as_str(), e["body"].as_str()),
            (Some("PUT"), Some("from a file"))
        );
        let r = Request::new(&format!("{b}/echo"))
            .expect("url")
            .with_reader(&b"streamed"[..]);
        assert_eq!(echo(&opener, r).await["body"], "streamed");

        // Redirects: each code with its method rule; the final URL.
        for (code, method, want_method, keeps_body) in [
            (301, "POST", "GET", false),
            (302, "POST", "GET", false),
            (303, "PUT", "GET", false),
            (307, "POST", "POST", true),
            (308, "PUT", "PUT", true),
        ] {
            let r = Request::new(&format!("{b}/redirect/{code}"))
                .expect("url")
                .with_method(method)
                .with_data("payload");
            let response = opener.open(r).await.expect("redirected");
            assert_eq!(response.url.path(), "/echo", "{code}");
            let e: serde_json::Value =
                serde_json::from_str(&response.text().await.expect("body")).expect("json");
            assert_eq!(e["method"], want_method, "{code}");
            assert_eq!(e["body"] == "payload", keeps_body, "{code}: {e}");
        }
        let r = Request::new(&format!("{b}/redirect/307"))
            .expect("url")
            .with_reader(&b"once"[..]);
        assert!(matches!(
            opener.open(r).await,
            Err(UrlError::Unsupported { .. })
        ));
        assert_eq!(
            opener
                .open(format!("{b}/chain/3"))
                .await
                .expect("3 hops")
                .url
                .path(),
            "/echo"
        );
        assert!(matches!(
            opener.open(format!("{b}/chain/11")).await,
            Err(UrlError::TooManyRedirects { max: 10, .. })
        ));
        let strict = Opener::builder()
            .proxies(Proxies::none())
            .max_redirects(2)
            .build();
        assert!(matches!(
            strict.open(format!("{b}/chain/3")).await,
            Err(UrlError::TooManyRedirects { .. })
        ));
        // Never to file: URLs.
        let r = opener
            .open(format!("{b}/redirect/302?to=file:///etc/passwd"))
            .await;
        assert!(matches!(r, Err(UrlError::Unsupported { .. })), "{r:?}");
        // Credentials stay with their origin: kept on the same host, dropped
        // for another (localhost is another host name for the same server).
        let same = Request::new(&format!("{b}/redirect/302?to=/echo"))
            .expect("url")
            .with_header("Authorization", "Basic c2VjcmV0");
        assert_eq!(
            echo(&opener, same).await["headers"]["authorization"],
            "Basic c2VjcmV0"
        );
        let other = format!("http://localhost:{}/echo", web.port);
        let cross = Request::new(&format!("{b}/redirect/302?to={}", ferry_url::quote(&other)))
            .expect("url")
            .with_header("Authorization", "Basic c2VjcmV0");
        let e = echo(&opener, cross).await;
        assert!(e["headers"].get("authorization").is_none(), "leaked: {e}");

        // Error statuses carry code, reason, headers and a readable body.
        for (code, reason) in [(404, "Not Found"), (500, "Internal Server Error")] {
            let (c, r, h, body) = status_of(opener.open(format!("{b}/status/{code}")).await);
            assert_eq!((c, r.as_str()), (code, reason));
            assert_eq!(h.get("x-status"), Some(code.to_string().as_str()));
            assert_eq!(
                body.text().await.expect("body"),
                format!("status {code} body")
            );
        }

        // Basic authentication: a challenge answered once from the password
        // manager (by realm, or the default realm), credentials in the URL.
        let (c, ..) = status_of(opener.open(format!("{b}/auth")).await);
        assert_eq!(c, 401);
        for realm in [Some("ferry"), None] {
            let mut pm = PasswordManager::new();
            pm.add_password(realm, b, "user", "secret");
            let o = Opener::builder()
                .proxies(Proxies::none())
                .password_manager(pm)
                .netrc(false)
                .build();
            let body = o
                .open(format!("{b}/auth"))
                .await
                .expect("authenticated")
                .text()
                .await
                .expect("body");
            assert_eq!(body, "hello user");
        }
        let mut wrong = PasswordManager::new();
        wrong.add_password(None, b, "user", "wrong");
        let o = Opener::builder()
            .proxies(Proxies::none())
            .password_manager(wrong)
            .netrc(false)
            .build();
        assert_eq!(status_of(o.open(format!("{b}/auth")).await).0, 401);
        let with_creds = format!("http://user:secret@127.0.0.1:{}/auth", web.port);
        assert_eq!(
            opener
                .open(with_creds)
                .await
                .expect("url credentials")
                .status,
            200
        );

        // Timeouts: per request, and the opener's default.
        let started = Instant::now();
        let r = Request::new(&format!("{b}/slow"))
            .expect("url")
            .with_timeout(Duration::from_millis(500));
        assert_eq!(
            opener.open(r).await.expect_err("slow").unreachable(),
            Some(Unreachable::Timeout)
        );
        assert!(started.elapsed() < Duration::from_millis(2900));
        let impatient = Opener::builder()
            .proxies(Proxies::none())
            .timeout(Duration::from_millis(500))
            .build();
        assert_eq!(
            impatient
                .open(format!("{b}/slow"))
                .await
                .expect_err("slow")
                .unreachable(),
            Some(Unreachable::Timeout)
        );
        // Nothing listening.
        let dead = format!("http://127.0.0.1:{}/", free_port());
        assert_eq!(
            opener.open(dead).await.expect_err("refused").unreachable(),
            Some(Unreachable::Refused)
        );

        // A large body is streamed.
        let mut response = opener
            .open(format!("{b}/large?n=50000000"))
            .await
            .expect("large");
        assert_eq!(response.content_length(), Some(50_000_000));
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut response, &mut buf)
                .await
                .expect("read");
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 50_000_000);
    });
}

/// A scheme of its own: `echo:TEXT` answers TEXT.
#[derive(Debug)]
struct EchoScheme;

#[async_trait::async_trait]
impl Handler for EchoScheme {
    fn name(&self) -> &str {
        "echo-scheme"
    }
    fn schemes(&self) -> &[&str] {
        &["echo"]
    }
    async fn open(&self, request: Request, _context: &OpenContext) -> ferry_url::Result<Response> {
        let text = request.url().path().to_owned();
        Ok(Response::from_bytes(
            200,
            "OK",
            ferry_url::Headers::new(),
            request.url().clone(),
            text.into_bytes(),
        ))
    }
}

/// A processor: adds a header to every request.
#[derive(Debug)]
struct Stamp;

#[async_trait::async_trait]
impl Handler for Stamp {
    fn name(&self) -> &str {
        "stamp"
    }
    fn order(&self) -> i32 {
        50
    }
    fn process_request(&self, request: &mut Request) -> ferry_url::Result<()> {
        request.headers.set("X-Stamped", "by a test handler");
        Ok(())
    }
}

#[test]
fn handlers_can_be_added_replaced_and_removed() {
    let web = HttpServer::start();
    let opener = Opener::builder()
        .proxies(Proxies::none())
        .handler(EchoScheme)
        .handler(Stamp)
        .build();
    assert!(opener.handler_names().contains(&"echo-scheme"));
    rt().block_on(async {
        assert_eq!(
            opener
                .open("echo:hello")
                .await
                .expect("echo")
                .text()
                .await
                .expect("body"),
            "hello"
        );
        let e = echo(
            &opener,
            Request::new(&format!("{}/echo", web.base)).expect("url"),
        )
        .await;
        assert_eq!(e["headers"]["x-stamped"], "by a test handler");
        let without = Opener::builder().without("data").build();
        assert!(matches!(
            without.open("data:,x").await,
            Err(UrlError::UnknownScheme { .. })
        ));
        // build_opener with a replacement for a stock handler of the same name.
        #[derive(Debug)]
        struct FakeData;
        #[async_trait::async_trait]
        impl Handler for FakeData {
            fn name(&self) -> &str {
                "data"
            }
            fn schemes(&self) -> &[&str] {
                &["data"]
            }
            async fn open(&self, r: Request, _c: &OpenContext) -> ferry_url::Result<Response> {
                Ok(Response::from_bytes(
                    200,
                    "OK",
                    ferry_url::Headers::new(),
                    r.url().clone(),
                    b"replaced".to_vec(),
                ))
            }
        }
        let replaced = ferry_url::build_opener(vec![Arc::new(FakeData)]);
        assert_eq!(
            replaced
                .open("data:,x")
                .await
                .expect("data")
                .text()
                .await
                .expect("body"),
            "replaced"
        );
    });
}

#[test]
fn https_with_a_ca_and_proxies_with_tinyproxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca(dir.path());
    let web = HttpServer::start_tls(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
    let plain = HttpServer::start();
    let proxy = Tinyproxy::start(None);
    let guarded = Tinyproxy::start(Some(("puser", "ppass")));
    rt().block_on(async {
        let url = format!("{}/echo", web.base);
        let strict = Opener::builder().proxies(Proxies::none()).build();
        assert_eq!(
            strict
                .open(url.as_str())
                .await
                .expect_err("unknown CA")
                .unreachable(),
            Some(Unreachable::Tls)
        );
        let trusting = Opener::builder()
            .proxies(Proxies::none())
            .ca_file(&ca)
            .build();
        assert_eq!(
            trusting.open(url.as_str()).await.expect("CA file").status,
            200
        );
        let insecure = Opener::builder()
            .proxies(Proxies::none())
            .insecure(true)
            .build();
        assert_eq!(
            insecure.open(url.as_str()).await.expect("insecure").status,
            200
        );

        // Through tinyproxy: http as an absolute-URI request, https in a
        // CONNECT tunnel; tinyproxy's log shows it carried both.
        let mut proxies = Proxies::none();
        proxies.set("http", &proxy.url()).expect("proxy");
        proxies.set("https", &proxy.url()).expect("proxy");
        let via = Opener::builder()
            .proxies(proxies.clone())
            .ca_file(&ca)
            .build();
        let e = echo(
            &via,
            Request::new(&format!("{}/echo", plain.base)).expect("url"),
        )
        .await;
        assert!(
            e["headers"]["via"]
                .as_str()
                .is_some_and(|v| v.contains("tinyproxy")),
            "{e}"
        );
        assert_eq!(via.open(url.as_str()).await.expect("tunnel").status, 200);
        let log = proxy.log();
        assert!(
            log.contains(&format!("GET http://127.0.0.1:{}/echo", plain.port)),
            "{log}"
        );
        assert!(
            log.contains(&format!("CONNECT 127.0.0.1:{}", web.port)),
            "{log}"
        );
        // no_proxy sends a host direct (the proxy here does not exist).
        let mut bypass = Proxies::none();
        bypass
            .set("http", &format!("http://127.0.0.1:{}", free_port()))
            .expect("proxy");
        bypass.set_no_proxy("127.0.0.1");
        let o = Opener::builder().proxies(bypass).build();
        assert_eq!(
            o.open(format!("{}/echo", plain.base))
                .await
                .expect("direct")
                .status,
            200
        );

        // A proxy that wants credentials: 407 without, through with them.
        let mut p = Proxies::none();
        p.set("all", &guarded.url()).expect("proxy");
        let o = Opener::builder().proxies(p).build();
        assert_eq!(
            status_of(o.open(format!("{}/echo", plain.base)).await).0,
            407
        );
        let mut p = Proxies::none();
        p.set(
            "all",
            &format!("http://puser:ppass@127.0.0.1:{}", guarded.port),
        )
        .expect("proxy");
        let o = Opener::builder().proxies(p).ca_file(&ca).build();
        assert_eq!(
            o.open(format!("{}/echo", plain.base))
                .await
                .expect("proxy auth")
                .status,
            200
        );
        assert_eq!(
            o.open(url.as_str())
                .await
                .expect("proxy auth, tunnel")
                .status,
            200
        );
    });
    // The environment: http_proxy and no_proxy, read by `ferry fetch`.
    let out = run(
        Command::new(ferry_bin())
            .args(["fetch", &format!("{}/echo", plain.base)])
            .env("http_proxy", proxy.url()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tinyproxy"),
        "{out:?}"
    );
    let out = run(
        Command::new(ferry_bin())
            .args(["fetch", &format!("{}/echo", plain.base)])
            .env("http_proxy", proxy.url())
            .env("no_proxy", "127.0.0.1"),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("tinyproxy"),
        "{out:?}"
    );
}

/// `ftp:` through an HTTP proxy that speaks FTP (Squid), as urllib sends it
/// with `ftp_proxy`: downloads and listings go through it with the URL's or
/// the password manager's credentials, its refusals are HTTP statuses with
/// the FTP reply named, uploads and `no_proxy` hosts go direct or are refused.
#[test]
fn ftp_through_squid() {
    let server = FerryServer::start();
    let data = random_bytes(300_000, 22);
    std::fs::create_dir_all(server.files().join("alice/dir")).expect("mkdir");
    std::fs::write(server.files().join("alice/dir/f.bin"), &data).expect("write");
    let squid = Squid::start();
    let port = server.port();
    rt().block_on(async {
        let mut proxies = Proxies::none();
        proxies.set("ftp", &squid.url()).expect("proxy");
        let via = Opener::builder().proxies(proxies.clone()).build();
        let url = format!("ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{port}/dir/f.bin");
        let r = via.open(url.as_str()).await.expect("through squid");
        assert_eq!(r.status, 200);
        assert!(
            r.headers.get("Via").is_some_and(|v| v.contains("squid")),
            "{:?}",
            r.headers
        );
        assert_eq!(r.bytes().await.expect("body"), data);
        let listing = via
            .open(format!(
                "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{port}/dir/"
            ))
            .await
            .expect("listing")
            .text()
            .await
            .expect("body");
        assert!(listing.contains("f.bin"), "{listing}");
        // Credentials from the password manager ride in the URL to the proxy.
        let mut pm = PasswordManager::new();
        pm.add_password(
            None,
            &format!("ftp://127.0.0.1:{port}/"),
            "alice",
            ALICE_PASSWORD,
        );
        let with_pm = Opener::builder()
            .proxies(proxies.clone())
            .password_manager(pm)
            .build();
        let body = with_pm
            .open(format!("ftp://127.0.0.1:{port}/dir/f.bin"))
            .await
            .expect("password manager")
            .bytes()
            .await
            .expect("body");
        assert_eq!(body.len(), data.len());
        // A refused login: the proxy's HTTP status, the FTP reply behind it.
        let (code, _, headers, _) = status_of(
            via.open(format!("ftp://alice:wrong@127.0.0.1:{port}/dir/f.bin"))
                .await,
        );
        assert_eq!(code, 403);
        assert!(
            headers
                .get("X-Squid-Error")
                .is_some_and(|v| v.contains("530")),
            "{headers:?}"
        );
        // Uploads do not go through it.
        let up = Request::new(&format!(
            "ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{port}/dir/up.txt"
        ))
        .expect("url")
        .with_data("x");
        let e = via.open(up).await.expect_err("no uploads through a proxy");
        assert!(e.to_string().contains("HTTP proxy"), "{e}");
        // no_proxy sends the host direct: no Via.
        let mut bypass = proxies.clone();
        bypass.set_no_proxy("127.0.0.1");
        let direct = Opener::builder().proxies(bypass).build();
        let r = direct.open(url.as_str()).await.expect("direct");
        assert!(r.headers.get("Via").is_none());
        assert_eq!(r.bytes().await.expect("body"), data);
    });
    // Squid's log shows it carried the downloads (it logs the URL whole).
    let log = squid.access_log();
    let carried = log
        .lines()
        .filter(|l| l.contains("GET ftp://") && l.contains(&format!("127.0.0.1:{port}/dir/f.bin")))
        .count();
    assert!(carried >= 2, "{log}");
}

#[test]
fn ftp_file_and_data_urls() {
    let server = FerryServer::start();
    let data = random_bytes(200_000, 21);
    std::fs::create_dir_all(server.files().join("alice/dir")).expect("mkdir");
    std::fs::write(server.files().join("alice/dir/f.bin"), &data).expect("write");
    let base = format!("ftp://alice:{ALICE_PASSWORD}@127.0.0.1:{}", server.port());
    let vsftpd = PeerServer::vsftpd(false);
    std::fs::write(vsftpd.files().join("v.txt"), b"from vsftpd\n").expect("write");
    vsftpd.hand_over();
    let ca = vsftpd.ca.clone().expect("ca");
    let local = tempfile::tempdir().expect("tempdir");
    std::fs::write(local.path().join("l.txt"), b"local file\n").expect("write");
    rt().block_on(async {
        let opener = direct();
        let r = opener
            .open(format!("{base}/dir/f.bin"))
            .await
            .expect("ftp download");
        assert_eq!(r.content_length(), Some(200_000));
        assert!(r.headers.contains("Last-Modified"));
        assert_eq!(r.bytes().await.expect("body"), data);
        let listing = opener
            .open(format!("{base}/dir/"))
            .await
            .expect("listing")
            .text()
            .await
            .expect("body");
        assert!(
            listing.contains("f.bin") && listing.contains("200000"),
            "{listing}"
        );
        let up = Request::new(&format!("{base}/dir/up.txt"))
            .expect("url")
            .with_data("uploaded by a URL");
        opener.open(up).await.expect("upload");
        assert_eq!(
            std::fs::read(server.files().join("alice/dir/up.txt")).expect("uploaded"),
            b"uploaded by a URL"
        );
        let (code, reason, ..) = status_of(opener.open(format!("{base}/dir/missing.bin")).await);
        assert_eq!(code, 550, "{reason}");
        let bad_login = format!("ftp://alice:wrong@127.0.0.1:{}/dir/f.bin", server.port());
        assert_eq!(status_of(opener.open(bad_login).await).0, 530);
        // FTPS with vsftpd, the certificate checked against the test CA.
        let tls = Opener::builder()
            .proxies(Proxies::none())
            .ca_file(&ca)
            .build();
        let body = tls
            .open(format!("{}/v.txt", vsftpd.base("ftpes")))
            .await
            .expect("ftpes")
            .text()
            .await
            .expect("body");
        assert_eq!(body, "from vsftpd\n");
        // Credentials for FTP from the password manager.
        let mut pm = PasswordManager::new();
        pm.add_password(
            None,
            &format!("ftp://127.0.0.1:{}/", server.port()),
            "alice",
            ALICE_PASSWORD,
        );
        let o = Opener::builder().password_manager(pm).netrc(false).build();
        let plain_url = format!("ftp://127.0.0.1:{}/dir/f.bin", server.port());
        assert_eq!(
            o.open(plain_url)
                .await
                .expect("manager credentials")
                .bytes()
                .await
                .expect("body"),
            data
        );

        // file: and data:
        let file_url = url::Url::from_file_path(local.path().join("l.txt")).expect("file url");
        let r = opener.open(file_url).await.expect("file");
        assert_eq!(r.headers.get("Content-Type"), Some("text/plain"));
        assert_eq!(r.text().await.expect("body"), "local file\n");
        let dir_url = url::Url::from_directory_path(local.path()).expect("dir url");
        assert_eq!(
            opener
                .open(dir_url)
                .await
                .expect("dir")
                .text()
                .await
                .expect("body"),
            "l.txt\n"
        );
        let missing = url::Url::from_file_path(local.path().join("nope")).expect("file url");
        assert_eq!(
            opener
                .open(missing)
                .await
                .expect_err("missing")
                .unreachable(),
            Some(Unreachable::NotFound)
        );
        let d = opener
            .open("data:text/plain;base64,SGVsbG8=")
            .await
            .expect("data");
        assert_eq!(d.headers.get("content-type"), Some("text/plain"));
        assert_eq!(d.text().await.expect("body"), "Hello");
    });
}

fn fetch(args: &[&str]) -> std::process::Output {
    run(
        Command::new(ferry_bin())
            .arg("fetch")
            .args(args)
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY"),
        Duration::from_secs(60),
    )
}

#[test]
fn fetch_command() {
    let web = HttpServer::start();
    let b = &web.base;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // -X, -H, -d (joined with &), -o.
    let out_file = d.join("out.json");
    let out = fetch(&[
        "-X",
        "PUT",
        "-H",
        "X-One: 1",
        "-d",
        "a=1",
        "-d",
        "b=2",
        "-o",
        out_file.to_str().expect("utf-8"),
        &format!("{b}/echo"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).expect("written")).expect("json");
    assert_eq!(
        (e["method"].as_str(), e["body"].as_str()),
        (Some("PUT"), Some("a=1&b=2"))
    );
    assert_eq!(e["headers"]["x-one"], "1");
    assert_eq!(
        e["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    // --data-binary @FILE, -i.
    std::fs::write(d.join("payload.bin"), b"binary\x00payload").expect("write");
    let at = format!("@{}", d.join("payload.bin").display());
    let out = fetch(&["-i", "--data-binary", &at, &format!("{b}/echo")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("200 OK\r\n") && text.contains("content-type: application/json"),
        "{text}"
    );
    assert!(text.contains("binary\\u0000payload"), "{text}");
    // -u, and netrc for a 401.
    let out = fetch(&["-u", "user:secret", &format!("{b}/auth")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello user");
    let netrc = d.join("netrc");
    std::fs::write(&netrc, "machine 127.0.0.1 login user password secret\n").expect("write");
    let out = run(
        Command::new(ferry_bin())
            .args(["fetch", &format!("{b}/auth")])
            .env("NETRC", &netrc),
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello user",
        "{out:?}"
    );
    // Errors: the body without --fail (exit 0), exit 22 with it.
    let out = fetch(&[&format!("{b}/status/404")]);
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "status 404 body")
    );
    let out = fetch(&["--fail", &format!("{b}/status/404")]);
    assert_eq!(out.status.code(), Some(22));
    assert!(
        out.stdout.is_empty() && String::from_utf8_lossy(&out.stderr).contains("404 Not Found"),
        "{out:?}"
    );
    // Timeouts (28), redirect limits (47), refused (7), FTP's code.
    let out = fetch(&["--timeout", "500ms", &format!("{b}/slow")]);
    assert_eq!(out.status.code(), Some(28), "{out:?}");
    let out = fetch(&["--max-redirs", "2", &format!("{b}/chain/5")]);
    assert_eq!(out.status.code(), Some(47), "{out:?}");
    let out = fetch(&[&format!("http://127.0.0.1:{}/", free_port())]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    // .invalid never resolves (RFC 2606).
    let out = fetch(&["http://nonexistent.invalid/"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("name resolution failed"),
        "{out:?}"
    );
    let server = FerryServer::start();
    std::fs::write(server.files().join("alice/hello.txt"), b"over ftp\n").expect("write");
    let ftp = format!("ftp://127.0.0.1:{}/hello.txt", server.port());
    let out = fetch(&["-u", &format!("alice:{ALICE_PASSWORD}"), &ftp]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "over ftp\n",
        "{out:?}"
    );
    let out = fetch(&[
        "--fail",
        "-u",
        &format!("alice:{ALICE_PASSWORD}"),
        &format!("{ftp}.missing"),
    ]);
    assert_eq!(out.status.code(), Some(22));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("550"),
        "{out:?}"
    );
    let out = fetch(&["data:,plain%20data"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "plain data");
}
