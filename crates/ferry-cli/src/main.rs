//! `ferry`: the command line. Argument parsing and wiring only; the work is done
//! by the library crates.

mod accounts;
mod ban;
mod client;
mod fetch;
mod manage;
mod policy;
mod serve;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ferry_config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "FTP server and client",
    propagate_version = true
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server in the foreground until SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// Check a configuration file; errors name the key and the line.
    CheckConfig {
        /// The configuration file (default: ./ferry.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Read one password from stdin and print its argon2id hash.
    HashPassword,
    /// Manage users in the account store.
    User(manage::UserArgs),
    /// Manage groups in the account store.
    Group(manage::GroupArgs),
    /// Explain the access policy.
    Policy(policy::PolicyArgs),
    /// List, add and lift bans of client addresses.
    Ban(ban::BanArgs),
    /// List a remote directory.
    Ls(client::commands::LsArgs),
    /// Download files (ftp://, ftpes://, ftps://, sftp:// URLs).
    Get(client::commands::GetArgs),
    /// Upload files.
    Put(client::commands::PutArgs),
    /// Delete remote files.
    Rm(client::commands::PathsArgs),
    /// Create remote directories.
    Mkdir(client::commands::PathsArgs),
    /// Remove empty remote directories.
    Rmdir(client::commands::PathsArgs),
    /// Rename a remote file or directory.
    Mv(client::commands::MvArgs),
    /// Make a local directory a copy of a remote one, or the other way round.
    Mirror(client::mirror::MirrorArgs),
    /// An interactive FTP prompt; reads commands from stdin when not a terminal.
    Shell(client::shell::ShellArgs),
    /// Open any supported URL and write the body (curl-like).
    Fetch(fetch::FetchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::HashPassword => hash_password(),
        Command::User(args) => manage::user(args),
        Command::Group(args) => manage::group(args),
        Command::Ban(args) => ban::run(args),
        Command::Fetch(args) => match fetch::run(args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Ls(args) => client::commands::ls(args),
        Command::Rm(args) => client::commands::each_path(args, "rm"),
        Command::Mkdir(args) => client::commands::each_path(args, "mkdir"),
        Command::Rmdir(args) => client::commands::each_path(args, "rmdir"),
        Command::Mv(args) => client::commands::mv(args),
        Command::Get(args) => all_done(client::commands::get(args)),
        Command::Put(args) => all_done(client::commands::put(args)),
        Command::Mirror(args) => all_done(client::mirror::run(args)),
        Command::Shell(args) => all_done(client::shell::run(args)),
        Command::Policy(args) => match policy::run(args) {
            Ok(true) => Ok(()),
            // A clear "deny" is an answer, not an error: its own exit status.
            Ok(false) => return ExitCode::from(3),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line a person can act on: the causes, outermost first.
            let text: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let mut line = text.join(": ");
            line.retain(|c| c != '\n');
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

/// A command that reports each failure itself returns whether all went well;
/// a partial failure is exit status 1 with nothing more to say.
fn all_done(result: anyhow::Result<bool>) -> anyhow::Result<()> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => Err(e),
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The configuration: the given file, else ./ferry.toml when present, else the
/// embedded defaults.
pub(crate) fn load_config(path: Option<&Path>) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = match path {
        Some(p) => Some(p.to_owned()),
        None => Some(PathBuf::from("ferry.toml")).filter(|p| p.exists()),
    };
    match path {
        Some(p) => Ok((Config::load(&p)?, Some(p))),
        None => Ok((Config::default(), None)),
    }
}

fn check_config(path: Option<&Path>) -> anyhow::Result<()> {
    let (config, path) = load_config(path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let users = runtime.block_on(async {
        let accounts = accounts::Accounts::open(&config, path.as_deref()).await?;
        accounts.user_count().await
    })?;
    let source = path.map_or_else(
        || "the embedded defaults".to_owned(),
        |p| p.display().to_string(),
    );
    let listen: Vec<String> = config
        .server
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    let counted = |n: usize, what: &str| {
        if n == 1 {
            format!("1 {what}")
        } else {
            format!("{n} {what}s")
        }
    };
    println!(
        "{source}: OK ({}, {} in the file, accounts in {}, listening on {})",
        counted(users, "user"),
        counted(config.groups.len(), "group"),
        config.accounts.store,
        listen.join(", ")
    );
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (shown as you type): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        anyhow::bail!(
            "the password is empty: write it on stdin, e.g. `echo -n secret | ferry hash-password`"
        );
    }
    println!("{}", ferry_accounts::password::hash(password)?);
    Ok(())
}
