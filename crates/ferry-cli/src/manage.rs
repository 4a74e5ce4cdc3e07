//! `ferry user ...` and `ferry group ...`: account management in the writable store.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use ferry_accounts::AccountStore;
use ferry_config::{AccountSettings, AuthorizedKey, PasswordHash, USER_ONLY_KEYS};

use crate::accounts::Accounts;

#[derive(Debug, clap::Args)]
pub struct UserArgs {
    /// The configuration file that names the account store.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user (asks for the password on a terminal).
    Add {
        name: String,
        /// Home directory, relative to storage.root (default /NAME).
        #[arg(long)]
        home: Option<String>,
        /// A group to join (repeatable, in order of precedence).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// SSH public keys the user signs in with over SFTP (an OpenSSH `.pub`
        /// or `authorized_keys` file); without --password-stdin the user has no
        /// password.
        #[arg(long, value_name = "FILE")]
        authorized_keys: Option<PathBuf>,
    },
    /// Change settings: KEY=VALUE with the keys of [[users]] (an empty VALUE
    /// unsets; authorized_keys=@FILE reads the keys from a file).
    Set {
        name: String,
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Delete a user (its files stay).
    Del { name: String },
    /// Set a new password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users from every store.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a user's settings.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Measure a user's stored bytes and files again and record them.
    RescanQuota { name: String },
}

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    /// The configuration file that names the account store.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Add a group, optionally with settings (KEY=VALUE).
    Add { name: String, settings: Vec<String> },
    /// Change settings: KEY=VALUE with the keys of [[groups]] (an empty VALUE unsets).
    Set {
        name: String,
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Delete a group.
    Del { name: String },
    /// List groups from every store.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a group's settings.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn open(
    config: Option<&std::path::Path>,
) -> anyhow::Result<(Accounts, ferry_config::Config)> {
    let (config, path) = crate::load_config(config)?;
    let accounts = Accounts::open(&config, path.as_deref()).await?;
    Ok((accounts, config))
}

/// Reads a password: the first line of stdin with `--password-stdin`, else a
/// hidden prompt on a terminal.
pub fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        bail!(
            "no terminal to ask for the password: pass --password-stdin and write it on standard input"
        );
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

fn apply_all(
    settings: &mut AccountSettings,
    assignments: &[String],
    group: bool,
) -> anyhow::Result<()> {
    for a in assignments {
        let (key, value) = a
            .split_once('=')
            .map_or((a.as_str(), ""), |(k, v)| (k.trim(), v.trim()));
        if group && USER_ONLY_KEYS.contains(&key) {
            bail!("{key}: only users have this setting, not groups");
        }
        if let ("authorized_keys", Some(file)) = (key, value.strip_prefix('@')) {
            settings.authorized_keys = read_authorized_keys(std::path::Path::new(file))?;
            continue;
        }
        settings.apply(a).map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}

/// The keys of an OpenSSH `.pub` or `authorized_keys` file: one per line,
/// blank lines and `#` comments skipped. An unusable line is an error naming
/// the file and the line; a file with no key at all is one too.
fn read_authorized_keys(path: &std::path::Path) -> anyhow::Result<Vec<AuthorizedKey>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the keys in {}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line
            .parse::<AuthorizedKey>()
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        keys.push(key);
    }
    if keys.is_empty() {
        bail!("{} holds no public key", path.display());
    }
    Ok(keys)
}

fn hash(password: &str) -> anyhow::Result<PasswordHash> {
    let h = ferry_accounts::password::hash(password)?;
    h.parse().map_err(|e: String| anyhow::anyhow!(e))
}

/// The settings for display: the password hash is never shown.
fn shown(mut s: AccountSettings) -> (AccountSettings, bool) {
    let has_password = s.password_hash.take().is_some();
    (s, has_password)
}

/// Prints a user's or group's settings; for a user, `usage` is its recorded
/// quota usage (`Some(None)`: never measured).
fn print_settings(
    name: &str,
    source: &str,
    settings: AccountSettings,
    json: bool,
    usage: Option<Option<ferry_accounts::Usage>>,
) -> anyhow::Result<()> {
    let (settings, has_password) = shown(settings);
    if json {
        let mut v = serde_json::json!({ "name": name, "source": source, "settings": settings });
        if has_password {
            v["password"] = serde_json::Value::String("set".into());
        }
        if let Some(usage) = usage {
            v["usage"] = usage.map_or(
                serde_json::Value::Null,
                |u| serde_json::json!({ "bytes": u.bytes, "files": u.files }),
            );
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("# {name} (from {source})");
        match usage {
            Some(Some(u)) => println!("# usage: {} bytes in {} files", u.bytes, u.files),
            Some(None) => {
                println!("# usage: not measured yet (at the first login, or by rescan-quota)")
            }
            None => {}
        }
        if has_password {
            println!("password_hash = (set)");
        }
        let text = toml::to_string(&settings)?;
        print!("{text}");
    }
    Ok(())
}

pub fn user(args: UserArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let (accounts, config) = open(args.config.as_deref()).await?;
        match args.command {
            UserCommand::Add { name, home, groups, password_stdin, authorized_keys } => {
                check_name(&name)?;
                if accounts.config_store.user(&name).await?.is_some() {
                    bail!("user `{name}` is defined in the configuration file already");
                }
                for g in &groups {
                    if !group_exists(&accounts, g).await? {
                        bail!("group `{g}` does not exist: add it first with `ferry group add {g}`");
                    }
                }
                let store = accounts.writable()?;
                let authorized_keys = match &authorized_keys {
                    Some(file) => read_authorized_keys(file)?,
                    None => Vec::new(),
                };
                // A user with keys and no --password-stdin signs in with keys only.
                let password_hash = if authorized_keys.is_empty() || password_stdin {
                    Some(hash(&read_password(password_stdin)?)?)
                } else {
                    None
                };
                let settings = AccountSettings { password_hash, home, groups, authorized_keys, ..Default::default() };
                store.add_user(&name, &settings).await?;
                println!("added user {name} to {}", store.describe());
            }
            UserCommand::Set { name, settings } => {
                let store = accounts.writable()?;
                let mut current = store.user(&name).await?.with_context(|| not_in_store("user", &name, &accounts))?;
                apply_all(&mut current, &settings, false)?;
                for g in &current.groups {
                    if !group_exists(&accounts, g).await? {
                        bail!("group `{g}` does not exist");
                    }
                }
                store.set_user(&name, &current).await?;
                println!("updated user {name}");
            }
            UserCommand::Del { name } => {
                let store = accounts.writable()?;
                store.delete_user(&name).await?;
                println!("deleted user {name} (its files are kept)");
            }
            UserCommand::Passwd { name, password_stdin } => {
                let store = accounts.writable()?;
                let mut current = store.user(&name).await?.with_context(|| not_in_store("user", &name, &accounts))?;
                current.password_hash = Some(hash(&read_password(password_stdin)?)?);
                store.set_user(&name, &current).await?;
                println!("changed the password of {name}");
            }
            UserCommand::List { json } => {
                let mut rows = Vec::new();
                for store in accounts.authenticator.stores() {
                    for name in store.user_names().await? {
                        let s = store.user(&name).await?.unwrap_or_default();
                        rows.push((name, store.describe(), s));
                    }
                }
                if json {
                    let list: Vec<_> = rows
                        .into_iter()
                        .map(|(name, source, s)| serde_json::json!({ "name": name, "source": source, "settings": shown(s).0 }))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    for (name, source, s) in rows {
                        let home = s.home.clone().unwrap_or_else(|| format!("/{name}"));
                        println!("{name}\thome={home}\tgroups={}\tfrom {source}", s.groups.join(","));
                    }
                }
            }
            UserCommand::Show { name, json } => {
                for store in accounts.authenticator.stores() {
                    if let Some(s) = store.user(&name).await? {
                        // Usage is on record only in an account database; with
                        // `store = "config"` it lives in the server's memory.
                        let usage = match &accounts.sql {
                            Some(sql) => Some(ferry_accounts::UsageLedger::get(sql.as_ref(), &name).await?),
                            None => None,
                        };
                        return print_settings(&name, &store.describe(), s, json, usage);
                    }
                }
                bail!("user `{name}` does not exist");
            }
            UserCommand::RescanQuota { name } => {
                // As a server recounts after a crash: not while uploads of
                // the user are in flight, whose bytes are partly stored and
                // partly only reserved (ferry_server::recount).
                let mut opts = ferry_server::options::ServerOptions::from_config(
                    &config,
                    crate::serve::open_storage(&config)?,
                    accounts.authenticator.clone(),
                );
                opts.ledger = accounts.ledger.clone();
                if config.accounts.system_users {
                    opts.host_storage = Some(std::sync::Arc::new(
                        ferry_storage::local::LocalDisk::new("/")?,
                    ));
                }
                let recounter = ferry_server::recount::QuotaRecounter::new(
                    &opts,
                    config.accounts.recount_after.0,
                );
                let usage = recounter.recount(&name).await?;
                println!("{name}: {} bytes in {} files", usage.bytes, usage.files);
            }
        }
        Ok(())
    })
}

pub fn group(args: GroupArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let (accounts, _) = open(args.config.as_deref()).await?;
        match args.command {
            GroupCommand::Add { name, settings } => {
                check_name(&name)?;
                if accounts.config_store.group(&name).await?.is_some() {
                    bail!("group `{name}` is defined in the configuration file already");
                }
                let store = accounts.writable()?;
                let mut s = AccountSettings::default();
                apply_all(&mut s, &settings, true)?;
                store.add_group(&name, &s).await?;
                println!("added group {name} to {}", store.describe());
            }
            GroupCommand::Set { name, settings } => {
                let store = accounts.writable()?;
                let mut current = store
                    .group(&name)
                    .await?
                    .with_context(|| not_in_store("group", &name, &accounts))?;
                apply_all(&mut current, &settings, true)?;
                store.set_group(&name, &current).await?;
                println!("updated group {name}");
            }
            GroupCommand::Del { name } => {
                let store = accounts.writable()?;
                store.delete_group(&name).await?;
                println!("deleted group {name}");
            }
            GroupCommand::List { json } => {
                let mut rows = Vec::new();
                for store in accounts.authenticator.stores() {
                    for name in store.group_names().await? {
                        rows.push(serde_json::json!({ "name": name, "source": store.describe() }));
                    }
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    for r in rows {
                        println!(
                            "{}\tfrom {}",
                            r["name"].as_str().unwrap_or(""),
                            r["source"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            GroupCommand::Show { name, json } => {
                for store in accounts.authenticator.stores() {
                    if let Some(s) = store.group(&name).await? {
                        return print_settings(&name, &store.describe(), s, json, None);
                    }
                }
                bail!("group `{name}` does not exist");
            }
        }
        Ok(())
    })
}

async fn group_exists(accounts: &Accounts, name: &str) -> anyhow::Result<bool> {
    for store in accounts.authenticator.stores() {
        if store.group(name).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn not_in_store(kind: &str, name: &str, accounts: &Accounts) -> String {
    let store = accounts
        .sql
        .as_ref()
        .map_or_else(|| "the account store".into(), |s| s.describe());
    format!("{kind} `{name}` is not in {store} (users of the configuration file are edited there)")
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || name.contains(|c: char| c.is_control() || c.is_whitespace() || c == '/')
    {
        bail!("`{name}` is not a valid name: use 1-64 characters without spaces or slashes");
    }
    if ferry_accounts::Authenticator::is_anonymous_name(name) {
        bail!("`{name}` is reserved for anonymous access ([anonymous])");
    }
    Ok(())
}
