//! `ferry serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use ferry_config::ExplicitTls;
use ferry_config::StorageBackendKind;
use ferry_server::activity::ActivityLog;
use ferry_server::bans::BanList;
use ferry_server::tls::TlsContext;
use ferry_server::{Server, ServerOptions};
use ferry_storage::StorageBackend;
use ferry_storage::local::LocalDisk;
use ferry_storage::object::{BucketProblem, ObjectStorage, S3Settings};

use crate::accounts::Accounts;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (default: ./ferry.toml when present, else built-in
    /// defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen on this address instead of the configured ones (repeatable).
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Keep files under this directory instead of storage.root.
    #[arg(long)]
    root: Option<PathBuf>,
}

/// The blocking pool's threads beyond `server.max_blocking_transfers`.
const FILE_SYSTEM_THREADS: usize = 256;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    ferry_server::allocator::return_large_blocks();
    let (mut config, path) = crate::load_config(args.config.as_deref())?;
    if !args.listen.is_empty() {
        config.server.listen = args.listen;
    }
    if let Some(root) = args.root {
        if config.storage.backend != StorageBackendKind::Local {
            eprintln!(
                "ferry: --root is ignored: with backend = \"s3\" the files are in the bucket (storage.bucket, storage.prefix)"
            );
        }
        config.storage.root = root;
    }
    let storage = open_storage(&config)?;

    // The blocking pool runs the transfers' blocking loops and, beside them,
    // the file-system calls of every session: these always keep
    // FILE_SYSTEM_THREADS threads of their own (512 in all by default, tokio's
    // own default).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(
            config
                .server
                .max_blocking_transfers
                .saturating_add(FILE_SYSTEM_THREADS),
        )
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // A file-size limit (`ulimit -f`, RLIMIT_FSIZE) fails the write that
        // crosses it with EFBIG (552 to the client) and sends SIGXFSZ, whose
        // default action ends the process. A handler, installed for the rest
        // of the process's life, replaces that action; the signal is not
        // needed beyond that.
        let file_size_signal = tokio::signal::unix::SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw());
        if let Err(e) = tokio::signal::unix::signal(file_size_signal) {
            eprintln!("ferry: cannot catch SIGXFSZ ({e}): a write past `ulimit -f` would stop the server");
        }
        check_bucket(&config).await?;
        let accounts = Accounts::open(&config, path.as_deref()).await?;
        let users = accounts.user_count().await?;
        let mut opts = ServerOptions::from_config(&config, storage, accounts.authenticator.clone());
        opts.ledger = accounts.ledger.clone();
        if config.accounts.system_users {
            opts.host_storage = Some(Arc::new(LocalDisk::new("/")?));
        }
        let activity = Arc::new(
            ActivityLog::open(Some(&config.log.audit), Some(&config.log.xferlog)).context("cannot open the [log] files")?,
        );
        opts.activity = activity.clone();
        opts.bans = Arc::new(BanList::new(
            &config.security,
            accounts.sql.clone(),
            Arc::new(std::time::SystemTime::now),
        ));
        if config.tls.explicit != ExplicitTls::Off || !config.tls.implicit_listen.is_empty() {
            let tls = TlsContext::from_config(&config.tls, Path::new("./ferry-data/tls")).context("[tls]")?;
            eprintln!("ferry: TLS certificate SHA-256 fingerprint {}", tls.fingerprint());
            let tls = Arc::new(tls);
            opts.tls = Some(tls.clone());
            // SIGHUP reads the certificate and key again, without a restart.
            on_sighup(move || match tls.reload() {
                Ok(fp) => eprintln!("ferry: TLS certificate reloaded, SHA-256 fingerprint {fp}"),
                Err(e) => eprintln!("ferry: TLS certificate not reloaded, keeping the old one: {e}"),
            });
        }
        if !config.sftp.listen.is_empty() {
            let sftp = ferry_server::sftp::SftpContext::new(
                &config.sftp,
                Path::new("./ferry-data/ssh"),
                config.server.idle_timeout.0,
            )
            .context("[sftp]")?;
            eprintln!("ferry: SSH host key fingerprint {}", sftp.fingerprint());
            let sftp = Arc::new(sftp);
            opts.sftp = Some(sftp.clone());
            if !config.sftp.trusted_user_ca_keys.is_empty() || config.sftp.revoked_keys.is_some() {
                // SIGHUP reads the trusted CA keys and the revoked keys again.
                on_sighup(move || match sftp.reload_trust() {
                    Ok(trust) => eprintln!("ferry: SSH trust reloaded: {trust}"),
                    Err(e) => eprintln!("ferry: SSH trust not reloaded, keeping the old one: {e}"),
                });
            }
        }
        if accounts.sql.is_some() {
            // Quota reservations of uploads a crashed server left unsettled
            // (ferry_server::recount).
            let recounter = ferry_server::recount::QuotaRecounter::new(&opts, config.accounts.recount_after.0);
            tokio::spawn(recounter.run());
        }
        let server = Server::bind(opts).await?;
        for addr in server.local_addrs() {
            eprintln!("ferry: serving FTP on {addr}, files {}", where_files_are(&config));
        }
        for addr in server.implicit_addrs() {
            eprintln!("ferry: serving implicit FTPS on {addr}");
        }
        for addr in server.sftp_addrs() {
            eprintln!("ferry: serving SFTP on {addr}");
        }
        if users == 0 && !config.anonymous.enabled {
            let how = match &accounts.sql {
                Some(_) => "    ferry user add alice".to_owned(),
                None => "    echo -n 'a password' | ferry hash-password\n\
                          and put in ferry.toml: [[users]] name = \"alice\", password_hash = \"<the hash>\""
                    .to_owned(),
            };
            eprintln!(
                "ferry: no users yet, so nobody can log in. To add one (from this directory, or with --config):\n{how}\n\
                 Users added with `ferry user add` can log in at once; or set [anonymous] enabled = true for read-only anonymous access."
            );
        }
        let shutdown = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("ferry: stopping: no new sessions; transfers in flight may finish (send the signal again to stop now)");
            shutdown.cancel();
            wait_for_signal().await;
            eprintln!("ferry: stopped at once");
            std::process::exit(130);
        });
        server.run().await;
        activity.close();
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the process still stops on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// The backend `[storage]` names: the local disk under `root`, or an S3 bucket.
pub fn open_storage(config: &ferry_config::Config) -> anyhow::Result<Arc<dyn StorageBackend>> {
    let s = &config.storage;
    Ok(match s.backend {
        StorageBackendKind::Local => Arc::new(
            LocalDisk::new(&s.root)
                .with_context(|| format!("cannot create the storage root {}", s.root.display()))?,
        ),
        StorageBackendKind::S3 => {
            Arc::new(ObjectStorage::s3(&s3_settings(config)).context("[storage] backend = \"s3\"")?)
        }
    })
}

/// `[storage]`'s bucket, endpoint and credentials.
fn s3_settings(config: &ferry_config::Config) -> S3Settings {
    let s = &config.storage;
    S3Settings {
        bucket: s.bucket.clone().unwrap_or_default(),
        endpoint: s.endpoint.clone(),
        region: s.region.clone(),
        prefix: s.prefix.clone(),
        credentials: s.access_key_id.clone().zip(s.secret_access_key.clone()),
        timeout: S3_REQUEST_TIMEOUT,
    }
}

/// With `backend = "s3"`, asks the bucket for its first keys before serving:
/// a bucket that does not exist or refuses the credentials stops the start
/// with the reason; a storage service that cannot be reached is only warned
/// about (it may be back in a moment; logins are answered 421 meanwhile).
async fn check_bucket(config: &ferry_config::Config) -> anyhow::Result<()> {
    if config.storage.backend != StorageBackendKind::S3 {
        return Ok(());
    }
    let settings = s3_settings(config);
    let bucket = ObjectStorage::s3(&settings).context("[storage] backend = \"s3\"")?;
    let place = format!(
        "S3 bucket {} at {}",
        settings.bucket,
        settings.endpoint.as_deref().unwrap_or("AWS")
    );
    let probe = tokio::time::timeout(BUCKET_PROBE_TIMEOUT, bucket.probe()).await;
    let probe = probe.unwrap_or_else(|_| {
        Err(BucketProblem::Unreachable(format!(
            "no answer within {} s",
            BUCKET_PROBE_TIMEOUT.as_secs()
        )))
    });
    match probe {
        Ok(()) => Ok(()),
        Err(BucketProblem::Unreachable(why)) => {
            eprintln!(
                "ferry: warning: the {place} cannot be reached yet ({why}); logins are refused with 421 until it can"
            );
            Ok(())
        }
        Err(problem) => Err(anyhow::anyhow!("[storage] the {place}: {problem}")),
    }
}

/// How long the start waits for the bucket's first answer before it warns
/// and serves.
const BUCKET_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long one request to the bucket may take, its retries included.
const S3_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the files are, for the start-up lines.
fn where_files_are(config: &ferry_config::Config) -> String {
    let s = &config.storage;
    match s.backend {
        StorageBackendKind::Local => format!("under {}", s.root.display()),
        StorageBackendKind::S3 => format!(
            "in the S3 bucket {}{}{}",
            s.bucket.as_deref().unwrap_or_default(),
            if s.prefix.is_empty() { "" } else { " under " },
            s.prefix
        ),
    }
}

/// Runs `reload` at each SIGHUP, for as long as the server runs.
fn on_sighup(reload: impl Fn() + Send + 'static) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            reload();
        }
    });
}
