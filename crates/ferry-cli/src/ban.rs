//! `ferry ban list|add|del`: the bans every node sharing the account database sees.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Subcommand;
use ferry_accounts::Ban;
use ferry_config::HumanDuration;

use crate::accounts::Accounts;

#[derive(Debug, clap::Args)]
pub struct BanArgs {
    /// The configuration file that names the account store.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: BanCommand,
}

#[derive(Debug, Subcommand)]
enum BanCommand {
    /// The bans in force.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Ban an address (new connections from it get 421).
    Add {
        address: IpAddr,
        /// How long, like "1h" (default: security.ban_time).
        #[arg(long = "for")]
        duration: Option<HumanDuration>,
        #[arg(long, default_value = "banned by an administrator")]
        reason: String,
    },
    /// Lift a ban.
    Del { address: IpAddr },
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn run(args: BanArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (config, path) = crate::load_config(args.config.as_deref())?;
        let accounts = Accounts::open(&config, path.as_deref()).await?;
        let store = accounts.sql.as_ref().context(
            "bans are shared through the account database: set accounts.store to \"sqlite:PATH\" or \"postgres://...\"",
        )?;
        match args.command {
            BanCommand::List { json } => {
                let bans = store.bans(now_unix()).await?;
                if json {
                    let list: Vec<_> = bans
                        .iter()
                        .map(|b| serde_json::json!({ "address": b.address.to_string(), "until_unix": b.until_unix, "reason": b.reason }))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else if bans.is_empty() {
                    println!("no bans in force");
                } else {
                    for b in bans {
                        println!("{}\t{} more seconds\t{}", b.address, b.until_unix - now_unix(), b.reason);
                    }
                }
            }
            BanCommand::Add { address, duration, reason } => {
                let secs = duration.unwrap_or(config.security.ban_time).0.as_secs() as i64;
                store.put_ban(&Ban { address, until_unix: now_unix() + secs, reason }).await?;
                println!("banned {address} for {secs} seconds");
            }
            BanCommand::Del { address } => {
                if store.delete_ban(address).await? {
                    println!("lifted the ban of {address}");
                } else {
                    anyhow::bail!("{address} is not banned");
                }
            }
        }
        Ok(())
    })
}
