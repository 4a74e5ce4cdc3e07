//! `ferry policy explain`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use ferry_accounts::explain::{Action, explain};
use ferry_storage::VirtualPath;
use time::OffsetDateTime;

use crate::accounts::Accounts;

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// The configuration file that names the account store.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Whether USER may do ACTION on PATH, and the rule or limit that decides.
    /// Exits 0 for allow, 3 for deny.
    Explain {
        user: String,
        /// login, list, download, upload, overwrite, append, delete, rename, mkdir,
        /// rmdir or chmod.
        action: String,
        /// The path as the user sees it (its home is /).
        #[arg(default_value = "/")]
        path: String,
        /// The client address to assume (default 127.0.0.1).
        #[arg(long, default_value = "127.0.0.1")]
        from: IpAddr,
        /// The time to assume, "YYYY-MM-DD HH:MM" in UTC or RFC 3339 (default now).
        #[arg(long)]
        at: Option<String>,
    },
}

fn parse_time(s: &str) -> anyhow::Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::PrimitiveDateTime::parse(s, &f)
        .map(|t| t.assume_utc())
        .with_context(|| format!("--at `{s}` is not \"YYYY-MM-DD HH:MM\" (UTC) or RFC 3339"))
}

/// Returns whether the action is allowed.
pub fn run(args: PolicyArgs) -> anyhow::Result<bool> {
    let PolicyCommand::Explain {
        user,
        action,
        path,
        from,
        at,
    } = args.command;
    let parsed: Action = action.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let at = match at {
        Some(s) => parse_time(&s)?,
        None => OffsetDateTime::now_utc(),
    };
    let vpath = VirtualPath::root().resolve(&path).context("PATH")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (config, config_path) = crate::load_config(args.config.as_deref())?;
        let accounts = Accounts::open(&config, config_path.as_deref()).await?;
        let account = accounts
            .authenticator
            .account(&user)
            .await
            .with_context(|| format!("user `{user}`"))?;
        let e = explain(&account, parsed, &vpath, from, at);
        print!("{}", e.render(&user, &action, &vpath));
        Ok(e.allowed)
    })
}
