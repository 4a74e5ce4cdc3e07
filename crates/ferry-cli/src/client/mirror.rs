//! `ferry mirror SRC DEST`: make a local directory a copy of a remote one, or
//! the other way round. The plan is ferry_client::mirror::plan_mirror.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use ferry_client::mirror::{
    MirrorAction, MirrorOptions, TreeEntry, plan_mirror, remote_join, walk_local, walk_remote,
};

use super::commands::{Job, mkdir_p, run_jobs};
use super::progress::Reporter;
use super::{ConnectArgs, TransferArgs, runtime};
use ferry_client::files::TransferSettings;

#[derive(Debug, clap::Args)]
pub struct MirrorArgs {
    /// What to copy from: a URL or a local directory.
    pub source: String,
    /// What to make a copy: a local directory or a URL (the other kind).
    pub dest: String,
    /// Delete what the destination has and the source does not.
    #[arg(long)]
    pub delete: bool,
    /// Copy only files newer at the source than at the destination.
    #[arg(long)]
    pub newer_only: bool,
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(args: MirrorArgs) -> anyhow::Result<bool> {
    let download = match (args.source.contains("://"), args.dest.contains("://")) {
        (true, false) => true,
        (false, true) => false,
        _ => bail!("mirror copies between a URL and a local directory: give one of each"),
    };
    let (url_text, local_text) = if download {
        (&args.source, &args.dest)
    } else {
        (&args.dest, &args.source)
    };
    let (remote, url) = args.connect.resolve(url_text)?;
    let local_root = PathBuf::from(local_text);
    let settings = TransferSettings {
        // The next run compares times: each copy takes its source's.
        keep_times: true,
        ..args.transfer.settings()
    };
    let options = MirrorOptions {
        delete: args.delete,
        newer_only: args.newer_only,
    };
    runtime()?.block_on(async {
        let mut session = remote.open().await?;
        let remote_root = url.path.trim_end_matches('/').to_owned();
        if !download && !args.dry_run && !remote_root.is_empty() {
            mkdir_p(&mut session, &remote_root).await?;
        }
        let remote_tree = match walk_remote(&mut session, &remote_root).await {
            Ok(t) => t,
            // A destination directory that does not exist yet is empty.
            Err(e) if !download && e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if download && !local_root.exists() && !args.dry_run {
            std::fs::create_dir_all(&local_root)
                .with_context(|| local_root.display().to_string())?;
        }
        let local_tree = walk_local(&local_root)?;
        let (source, dest) = if download {
            (&remote_tree, &local_tree)
        } else {
            (&local_tree, &remote_tree)
        };
        let plan = plan_mirror(source, dest, options);
        if args.dry_run {
            let _ = session.quit().await;
            if args.transfer.json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                for step in &plan {
                    println!("{}", describe(step));
                }
                println!("{} steps (dry run: nothing changed)", plan.len());
            }
            return Ok(true);
        }
        let sources: HashMap<&str, &TreeEntry> =
            source.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut jobs = Vec::new();
        let mut total = 0;
        // Steps run in the plan's order; the copies are collected and run
        // together (in parallel) where the plan puts them.
        let mut deletes_after = Vec::new();
        for step in &plan {
            match step {
                MirrorAction::MakeDir(p) => {
                    if download {
                        let d = local_root.join(p);
                        std::fs::create_dir_all(&d).with_context(|| d.display().to_string())?;
                    } else {
                        mkdir_p(&mut session, &remote_join(&remote_root, p)).await?;
                    }
                }
                MirrorAction::Copy(p) => {
                    total += sources.get(p.as_str()).map_or(0, |e| e.size);
                    let (local, remote_path) = (local_root.join(p), remote_join(&remote_root, p));
                    jobs.push(if download {
                        Job::Get {
                            remote: remote_path,
                            local,
                        }
                    } else {
                        Job::Put {
                            local,
                            remote: remote_path,
                        }
                    });
                }
                delete if jobs.is_empty() => {
                    if download {
                        remove_local(&local_root, delete)?;
                    } else {
                        remove_remote(&mut session, &remote_root, delete).await?;
                    }
                }
                delete => deletes_after.push(delete.clone()),
            }
        }
        let reporter = Arc::new(Reporter::new(
            args.transfer.quiet,
            args.transfer.json,
            jobs.len(),
            Some(total),
        ));
        let ok = run_jobs(
            &remote,
            Some(session),
            jobs,
            args.transfer.parallel,
            &settings,
            args.transfer.retries,
            reporter,
        )
        .await;
        // Deletions on the server wait for the copies; the first session
        // went to the workers.
        let mut session = if download || deletes_after.is_empty() {
            None
        } else {
            Some(remote.open().await?)
        };
        for delete in &deletes_after {
            match session.as_mut() {
                Some(session) => remove_remote(session, &remote_root, delete).await?,
                None => remove_local(&local_root, delete)?,
            }
        }
        if let Some(session) = session {
            let _ = session.quit().await;
        }
        Ok(ok)
    })
}

fn describe(step: &MirrorAction) -> String {
    match step {
        MirrorAction::MakeDir(p) => format!("mkdir {p}"),
        MirrorAction::Copy(p) => format!("copy {p}"),
        MirrorAction::DeleteFile(p) => format!("delete {p}"),
        MirrorAction::DeleteDir(p) => format!("rmdir {p}"),
    }
}

/// Carries out a deletion of the plan in the local copy. A directory replaced
/// by a file goes with its contents; what is already gone (removed with its
/// directory) is not an error.
fn remove_local(local_root: &std::path::Path, step: &MirrorAction) -> anyhow::Result<()> {
    let gone = |r: std::io::Result<()>, path: PathBuf| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| path.display().to_string())
        }
        _ => Ok(()),
    };
    match step {
        MirrorAction::DeleteFile(p) => {
            let f = local_root.join(p);
            gone(std::fs::remove_file(&f), f)?;
        }
        MirrorAction::DeleteDir(p) => {
            let d = local_root.join(p);
            gone(std::fs::remove_dir_all(&d), d)?;
        }
        _ => return Ok(()),
    }
    println!("{}", describe(step));
    Ok(())
}

/// Carries out a deletion of the plan on the server.
async fn remove_remote(
    session: &mut ferry_client::RemoteSession,
    remote_root: &str,
    step: &MirrorAction,
) -> anyhow::Result<()> {
    match step {
        MirrorAction::DeleteFile(p) => session.delete(&remote_join(remote_root, p)).await?,
        MirrorAction::DeleteDir(p) => session.rmdir(&remote_join(remote_root, p)).await?,
        _ => return Ok(()),
    }
    println!("{}", describe(step));
    Ok(())
}
