//! `ferry fetch URL`: open any supported URL through ferry-url and write the
//! body, curl-like.
//!
//! Exit status, as curl's where it has one: 0 done; 22 the server answered
//! with an error and `--fail` was given; 6 the name did not resolve; 7 the
//! connection was refused; 28 timeout; 35 TLS; 37 a local file is missing; 47
//! too many redirects; 1 anything else.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_config::HumanDuration;
use ferry_url::{Opener, PasswordManager, Proxies, Request, Timeouts, Unreachable, UrlError};
use tokio::io::AsyncReadExt;

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// http://, https://, ftp://, ftpes://, ftps://, file:// or data: URL.
    pub url: String,
    /// Write the body to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The method (default GET, or POST with data).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// A header field, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Send DATA as the body (repeatable: joined with &); @FILE reads a file.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Vec<String>,
    /// Send DATA exactly as given; @FILE streams a file.
    #[arg(long = "data-binary", value_name = "DATA")]
    pub data_binary: Option<String>,
    /// USER[:PASSWORD] for Basic authentication (sent at once) or FTP login.
    #[arg(short = 'u', long, value_name = "USER[:PASS]")]
    pub user: Option<String>,
    /// Use this proxy for every URL ("" for none; default: *_proxy variables).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Hosts that bypass the proxy (as no_proxy).
    #[arg(long, value_name = "LIST")]
    pub noproxy: Option<String>,
    /// Time allowed to connect, and for each read.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<HumanDuration>,
    /// Time allowed to connect (overrides --timeout for connecting).
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<HumanDuration>,
    /// Show the status line and header fields before the body.
    #[arg(short = 'i', long)]
    pub include: bool,
    /// The most redirects to follow.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_redirs: u32,
    /// Exit 22 (and write no body) when the server answers with an error.
    #[arg(short = 'f', long)]
    pub fail: bool,
    /// Accept any TLS certificate.
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Trust the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not read ~/.netrc.
    #[arg(long)]
    pub no_netrc: bool,
    /// The User-Agent (default ferry/<version>).
    #[arg(short = 'A', long, value_name = "TEXT")]
    pub user_agent: Option<String>,
    /// No progress bar.
    #[arg(short = 's', long)]
    pub silent: bool,
}

fn exit_code(e: &UrlError) -> u8 {
    match e {
        UrlError::Status(_) => 22,
        UrlError::Unreachable { kind, .. } => match kind {
            Unreachable::Resolve => 6,
            Unreachable::Refused => 7,
            Unreachable::Timeout => 28,
            Unreachable::Tls => 35,
            Unreachable::HostKey => 60,
            Unreachable::NotFound => 37,
            Unreachable::Other => 1,
        },
        UrlError::TooManyRedirects { .. } => 47,
        _ => 1,
    }
}

pub fn run(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(fetch(args))
}

async fn fetch(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let mut builder = Opener::builder()
        .max_redirects(args.max_redirs)
        .netrc(!args.no_netrc)
        .insecure(args.insecure);
    if let Some(ca) = &args.ca_file {
        builder = builder.ca_file(ca);
    }
    if let Some(ua) = &args.user_agent {
        builder = builder.user_agent(ua);
    }
    let mut timeouts = Timeouts::default();
    if let Some(t) = &args.timeout {
        timeouts = Timeouts::both(t.0);
    }
    if let Some(t) = &args.connect_timeout {
        timeouts.connect = Some(t.0);
    }
    builder = builder.timeouts(timeouts);
    if args.proxy.is_some() || args.noproxy.is_some() {
        let mut proxies = match &args.proxy {
            Some(p) if p.is_empty() => Proxies::none(),
            Some(p) => {
                let mut px = Proxies::none();
                px.set("all", p)?;
                px
            }
            None => Proxies::from_env(),
        };
        if let Some(list) = &args.noproxy {
            proxies.set_no_proxy(list);
        }
        builder = builder.proxies(proxies);
    }
    let mut request = Request::new(&args.url)?;
    if let Some(spec) = &args.user {
        let (user, password) = match spec.split_once(':') {
            Some((u, p)) => (u.to_owned(), p.to_owned()),
            None if std::io::stdin().is_terminal() => (
                spec.clone(),
                rpassword::prompt_password(format!("Password for {spec}: "))?,
            ),
            None => (spec.clone(), String::new()),
        };
        if matches!(request.url().scheme(), "http" | "https") {
            request
                .headers
                .set("Authorization", ferry_url::auth::basic(&user, &password));
        } else {
            let mut passwords = PasswordManager::new();
            let origin = request.url().clone();
            passwords.add_password(None, origin.as_str(), &user, &password);
            builder = builder.password_manager(passwords);
        }
    }
    let opener = builder.build();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("-H {h:?}: write 'Name: value'"))?;
        request.headers.set(name.trim(), value.trim());
    }
    let mut form = Vec::new();
    for d in &args.data {
        match d.strip_prefix('@') {
            Some(file) => {
                let text = std::fs::read_to_string(file).with_context(|| file.to_owned())?;
                form.push(text.replace(['\r', '\n'], ""));
            }
            None => form.push(d.clone()),
        }
    }
    if !form.is_empty() {
        request = request.with_data(form.join("&"));
        if !request.headers.contains("Content-Type") {
            request
                .headers
                .set("Content-Type", "application/x-www-form-urlencoded");
        }
    }
    if let Some(d) = &args.data_binary {
        request = match d.strip_prefix('@') {
            Some(file) => request.with_body(ferry_url::Body::File(PathBuf::from(file))),
            None => request.with_data(d.clone()),
        };
    }
    if let Some(m) = &args.method {
        request = request.with_method(m);
    }
    let response = match opener.open(request).await {
        Ok(r) => r,
        Err(UrlError::Status(e)) if !args.fail => e.body,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit_code(&e)));
        }
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| path.display().to_string())?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    if args.include {
        write!(
            out,
            "{} {}\r\n{}\r\n",
            response.status,
            response.reason,
            response.headers.to_string().replace('\n', "\r\n")
        )?;
    }
    let bar =
        (args.output.is_some() && !args.silent && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(response.content_length().unwrap_or(0));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bytes}/{total_bytes} {bar:30} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
    let url = response.url.clone();
    let mut body = response.into_body();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = body
            .read(&mut buf)
            .await
            .map_err(|e| anyhow::anyhow!("{url}: reading the body: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
    }
    out.flush()?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(ExitCode::SUCCESS)
}
