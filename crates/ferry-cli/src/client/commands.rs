//! `ferry ls`, `get`, `put`, `rm`, `mkdir`, `rmdir`, `mv`.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use ferry_client::files::{
    Remote, TransferSettings, Worker, download_segmented, sync_file_systems,
};
use ferry_client::mirror::{remote_join, walk_local, walk_remote};
use ferry_client::{ClientError, EntryKind, RemoteSession};

use super::progress::Reporter;
use super::{ConnectArgs, TransferArgs, basename, runtime};

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// ftp://, ftpes://, ftps:// or sftp:// URL of a directory (or a file).
    pub url: String,
    /// Long listing: type, permissions, size, time and name.
    #[arg(short = 'l')]
    pub long: bool,
    /// The entries as a JSON array.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The remote file (or directory, with -r).
    pub url: String,
    /// Where to write: a file name, or an existing directory (default: the
    /// remote name in the current directory).
    pub dest: Option<PathBuf>,
    /// Download a directory and everything under it.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Split one large download into N byte ranges on N connections.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub segments: u32,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// Local files (or directories, with -r), then the remote URL: a directory
    /// when it ends with `/` or when several files are given, else the target
    /// file name.
    #[arg(required = true, num_args = 2..)]
    pub paths: Vec<String>,
    /// Upload directories and everything under them.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, clap::Args)]
pub struct PathsArgs {
    /// URLs of what to act on.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// mkdir: create missing parents too, and succeed if it exists.
    #[arg(short = 'p', long)]
    pub parents: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, clap::Args)]
pub struct MvArgs {
    /// The remote file or directory to rename.
    pub url: String,
    /// The new name: a path on the same server (as in a URL: relative to the
    /// login directory, or absolute with a leading `/`), or a URL.
    pub to: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn ls(args: LsArgs) -> anyhow::Result<()> {
    let (remote, url) = args.connect.resolve(&args.url)?;
    runtime()?.block_on(async {
        let mut session = remote.open().await?;
        let mut entries = session.list(&url.path).await?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let _ = session.quit().await;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
        } else {
            for e in &entries {
                if args.long {
                    println!("{}", e.long_line());
                } else if e.kind == EntryKind::Dir {
                    println!("{}/", e.name);
                } else {
                    println!("{}", e.name);
                }
            }
        }
        Ok(())
    })
}

/// One file to move.
#[derive(Debug, Clone)]
pub enum Job {
    Get { remote: String, local: PathBuf },
    Put { local: PathBuf, remote: String },
}

impl Job {
    fn label(&self) -> String {
        match self {
            Job::Get { remote, .. } => remote.clone(),
            Job::Put { local, .. } => local.display().to_string(),
        }
    }
}

/// Runs `jobs` on `parallel` connections (the first one `first`, when given);
/// true when all succeeded. Each connection is a [`Worker`]: it reconnects and
/// resumes after a drop. Downloads of a batch are flushed to disk once, at
/// its end, and its uploads are not asked to be flushed one by one
/// ([`TransferSettings::sync_at_end`]).
pub async fn run_jobs(
    remote: &Remote,
    mut first: Option<RemoteSession>,
    jobs: Vec<Job>,
    parallel: usize,
    settings: &TransferSettings,
    retries: u32,
    reporter: Arc<Reporter>,
) -> bool {
    let download_dirs: BTreeSet<PathBuf> = jobs
        .iter()
        .filter_map(|job| match job {
            Job::Get { local, .. } => Some(match local.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => PathBuf::from("."),
            }),
            Job::Put { .. } => None,
        })
        .collect();
    let mut settings = settings.clone();
    settings.sync_at_end = jobs.len() > 1;
    let settings = &settings;
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let queue = queue.clone();
        let remote = remote.clone();
        let settings = settings.clone();
        let reporter = reporter.clone();
        // The first worker goes on with the session already open.
        let session = first.take();
        tasks.spawn(async move {
            let mut worker = match session {
                Some(s) => Worker::with_session(remote, s, retries),
                None => Worker::new(remote, retries),
            };
            loop {
                let job = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(_) => None,
                };
                let Some(job) = job else { break };
                let label = job.label();
                let progress = reporter.file(&label);
                let result = match &job {
                    Job::Get { remote, local } => {
                        worker.get(remote, local, &settings, &progress).await
                    }
                    Job::Put { local, remote } => {
                        worker.put(local, remote, &settings, &progress).await
                    }
                };
                match result {
                    Ok(report) => reporter.done(progress, report),
                    Err(e) => reporter.failed(Some(progress), &label, &anyhow::Error::new(e)),
                }
            }
            worker.quit().await;
        });
    }
    while tasks.join_next().await.is_some() {}
    if settings.sync_at_end
        && !download_dirs.is_empty()
        && let Err(e) = sync_file_systems(download_dirs.into_iter().collect()).await
    {
        reporter.failed(
            None,
            "flushing the downloads to disk",
            &anyhow::Error::new(e),
        );
    }
    reporter.finish()
}

pub fn get(args: GetArgs) -> anyhow::Result<bool> {
    let (remote, url) = args.connect.resolve(&args.url)?;
    let settings = args.transfer.settings();
    runtime()?.block_on(async {
        let mut session = remote.open().await?;
        let is_file =
            !url.names_directory() && session.size(&url.path).await.ok().flatten().is_some();
        if !is_file && args.recursive {
            return get_tree(session, &remote, &url.path, &args, &settings).await;
        }
        if url.names_directory() {
            let _ = session.quit().await;
            bail!("{url} is a directory: use -r to download it");
        }
        // A single file (or what the server will say is none).
        let name = basename(&url.path);
        let dest = match &args.dest {
            Some(d) if d.is_dir() => d.join(name),
            Some(d) => d.clone(),
            None => PathBuf::from(name),
        };
        let reporter = Reporter::new(args.transfer.quiet, args.transfer.json, 1, None);
        let progress = reporter.file(&url.path);
        let result = if args.segments > 1 {
            let _ = session.quit().await;
            download_segmented(
                &remote,
                &url.path,
                &dest,
                args.segments,
                args.transfer.retries,
                &settings,
                &progress,
            )
            .await
        } else {
            let mut worker = Worker::with_session(remote.clone(), session, args.transfer.retries);
            let r = worker.get(&url.path, &dest, &settings, &progress).await;
            worker.quit().await;
            r
        };
        match result {
            Ok(report) => reporter.done(progress, report),
            Err(e) => reporter.failed(Some(progress), &url.path, &anyhow::Error::new(e)),
        }
        Ok(reporter.finish())
    })
}

/// `get -r`: the tree under `root`, on `--parallel` connections.
async fn get_tree(
    mut session: RemoteSession,
    remote: &Remote,
    root: &str,
    args: &GetArgs,
    settings: &TransferSettings,
) -> anyhow::Result<bool> {
    {
        // Recursive.
        let tree = walk_remote(&mut session, root).await?;
        let root_name = basename(root);
        let local_root = match &args.dest {
            Some(d) if d.is_dir() && !root_name.is_empty() => d.join(root_name),
            Some(d) => d.clone(),
            None if root_name.is_empty() => PathBuf::from("."),
            None => PathBuf::from(root_name),
        };
        std::fs::create_dir_all(&local_root).with_context(|| local_root.display().to_string())?;
        let mut jobs = Vec::new();
        let mut total = 0;
        for e in &tree {
            let local = local_root.join(&e.path);
            if e.is_dir {
                std::fs::create_dir_all(&local).with_context(|| local.display().to_string())?;
            } else {
                total += e.size;
                jobs.push(Job::Get {
                    remote: remote_join(root, &e.path),
                    local,
                });
            }
        }
        let reporter = Arc::new(Reporter::new(
            args.transfer.quiet,
            args.transfer.json,
            jobs.len(),
            Some(total),
        ));
        Ok(run_jobs(
            remote,
            Some(session),
            jobs,
            args.transfer.parallel,
            settings,
            args.transfer.retries,
            reporter,
        )
        .await)
    }
}

/// Creates `path` and its missing parents; succeeds when it already exists.
pub async fn mkdir_p(session: &mut RemoteSession, path: &str) -> Result<(), ClientError> {
    let mut prefix = if path.starts_with('/') {
        "/".to_owned()
    } else {
        String::new()
    };
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix.push_str(part);
        if let Err(e) = session.mkdir(&prefix).await {
            // Exists already? Then CWD into it works.
            let here = session.pwd().await?;
            let exists = session.cwd(&prefix).await.is_ok();
            session.cwd(&here).await?;
            if !exists {
                return Err(e);
            }
        }
    }
    Ok(())
}

pub fn put(args: PutArgs) -> anyhow::Result<bool> {
    let Some((target, locals)) = args.paths.split_last() else {
        bail!("give local files and a remote URL");
    };
    let (remote, url) = args.connect.resolve(target)?;
    let settings = args.transfer.settings();
    let into_dir = url.names_directory() || locals.len() > 1;
    runtime()?.block_on(async {
        let mut jobs = Vec::new();
        let mut total = 0;
        let mut session = remote.open().await?;
        if url.names_directory() && !url.path.is_empty() {
            mkdir_p(&mut session, url.path.trim_end_matches('/')).await?;
        }
        for local in locals.iter().map(PathBuf::from) {
            let meta = std::fs::metadata(&local).with_context(|| local.display().to_string())?;
            let name = local
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{}: the name is not UTF-8", local.display()))?
                .to_owned();
            let remote_path = if into_dir {
                remote_join(&url.path, &name)
            } else {
                url.path.clone()
            };
            if meta.is_dir() {
                if !args.recursive {
                    bail!("{} is a directory: use -r to upload it", local.display());
                }
                mkdir_p(&mut session, &remote_path).await?;
                for e in walk_local(&local)? {
                    let there = remote_join(&remote_path, &e.path);
                    if e.is_dir {
                        mkdir_p(&mut session, &there).await?;
                    } else {
                        total += e.size;
                        jobs.push(Job::Put {
                            local: local.join(&e.path),
                            remote: there,
                        });
                    }
                }
            } else {
                total += meta.len();
                jobs.push(Job::Put {
                    local,
                    remote: remote_path,
                });
            }
        }
        let reporter = Arc::new(Reporter::new(
            args.transfer.quiet,
            args.transfer.json,
            jobs.len(),
            Some(total),
        ));
        Ok(run_jobs(
            &remote,
            Some(session),
            jobs,
            args.transfer.parallel,
            &settings,
            args.transfer.retries,
            reporter,
        )
        .await)
    })
}

/// `rm`, `mkdir` and `rmdir`: one session, each URL in turn; all must be on
/// the same server.
pub fn each_path(args: PathsArgs, what: &'static str) -> anyhow::Result<()> {
    let Some(first) = args.urls.first() else {
        bail!("give at least one URL");
    };
    let (remote, _) = args.connect.resolve(first)?;
    runtime()?.block_on(async {
        let mut session = remote.open().await?;
        for text in &args.urls {
            let url = ferry_client::FtpUrl::parse(text)?;
            if url.host != remote.url.host || url.port != remote.url.port {
                bail!(
                    "{url}: all URLs must be on the same server as {}",
                    remote.url
                );
            }
            let path = url.path.trim_end_matches('/');
            let result = match what {
                "rm" => session.delete(path).await,
                "rmdir" => session.rmdir(path).await,
                _ if args.parents => mkdir_p(&mut session, path).await,
                _ => session.mkdir(path).await.map(drop),
            };
            result.with_context(|| format!("{what} {url}"))?;
        }
        let _ = session.quit().await;
        Ok(())
    })
}

pub fn mv(args: MvArgs) -> anyhow::Result<()> {
    let (remote, url) = args.connect.resolve(&args.url)?;
    let to = if args.to.contains("://") {
        let t = ferry_client::FtpUrl::parse(&args.to)?;
        if t.host != url.host || t.port != url.port {
            bail!("mv renames on one server; {} is on another", t);
        }
        t.path
    } else {
        args.to.clone()
    };
    runtime()?.block_on(async {
        let mut session = remote.open().await?;
        session.rename(url.path.trim_end_matches('/'), &to).await?;
        let _ = session.quit().await;
        Ok(())
    })
}
