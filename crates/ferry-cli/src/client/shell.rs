//! `ferry shell [URL]`: the interactive `ferry>` prompt with the commands of the
//! classic ftp client. On a terminal it has line editing and history
//! (rustyline); otherwise it reads commands from standard input, one per line,
//! so transfers can be scripted, and exits non-zero if any command failed.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ferry_client::files::{Remote, TransferSettings, download_file, upload_file};
use ferry_client::{DataMode, FtpUrl, RemoteSession};
use globset::Glob;

use super::progress::Reporter;
use super::{ConnectArgs, basename, runtime};

#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// Server to open at start (ftp://, ftpes://, ftps://, sftp://).
    pub url: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

const HELP: &[(&str, &str)] = &[
    (
        "open URL | HOST [PORT]",
        "connect and log in (credentials: URL, --user, ~/.netrc, prompt)",
    ),
    ("user NAME [PASSWORD]", "log in again as another user"),
    ("ls [PATH]", "list names"),
    ("dir [PATH]", "list in detail"),
    ("cd PATH", "change the remote directory"),
    ("cdup", "go to the parent remote directory"),
    ("lcd [DIR]", "change the local directory"),
    ("pwd", "print the remote directory"),
    ("get REMOTE [LOCAL]", "download a file"),
    (
        "reget REMOTE [LOCAL]",
        "continue a partial download (checked first)",
    ),
    ("put LOCAL [REMOTE]", "upload a file"),
    (
        "mget PATTERN...",
        "download the files matching the patterns",
    ),
    (
        "mput PATTERN...",
        "upload the local files matching the patterns",
    ),
    ("delete PATH", "delete a remote file"),
    ("mkdir PATH", "create a remote directory"),
    ("rmdir PATH", "remove a remote directory"),
    ("rename FROM TO", "rename a remote file"),
    ("binary", "binary transfers (TYPE I, the default)"),
    ("ascii", "text transfers (TYPE A)"),
    ("passive", "toggle passive mode (on by default)"),
    ("size PATH", "size of a remote file"),
    ("modtime PATH", "modification time of a remote file"),
    ("status", "show the connection and settings"),
    ("quote LINE", "send a raw command and show the reply"),
    ("close", "end the session, stay in the shell"),
    ("quit", "end the session and leave (also bye, exit)"),
    ("help [COMMAND]", "this list"),
];

struct Shell {
    connect: ConnectArgs,
    session: Option<RemoteSession>,
    url: Option<FtpUrl>,
    ascii: bool,
    passive: bool,
    rt: tokio::runtime::Runtime,
}

enum Flow {
    Continue,
    Quit,
}

pub fn run(args: ShellArgs) -> anyhow::Result<bool> {
    let mut shell = Shell {
        passive: !args.connect.active,
        connect: args.connect,
        session: None,
        url: None,
        ascii: false,
        rt: runtime()?,
    };
    let mut failures = 0usize;
    if let Some(url) = &args.url
        && let Err(e) = shell.open(url)
    {
        report(&e);
        failures += 1;
    }
    if std::io::stdin().is_terminal() {
        let mut editor = rustyline::DefaultEditor::new().context("starting the line editor")?;
        let history = std::env::var_os("HOME").map(|h| Path::new(&h).join(".ferry_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        loop {
            match editor.readline("ferry> ") {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    match shell.execute(&line) {
                        Ok(Flow::Quit) => break,
                        Ok(Flow::Continue) => {}
                        Err(e) => {
                            report(&e);
                            failures += 1;
                        }
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(_) => break,
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
    } else {
        for line in std::io::stdin().lock().lines() {
            let line = line.context("reading commands from standard input")?;
            match shell.execute(&line) {
                Ok(Flow::Quit) => break,
                Ok(Flow::Continue) => {}
                Err(e) => {
                    report(&e);
                    failures += 1;
                }
            }
        }
    }
    shell.close();
    Ok(failures == 0)
}

fn report(e: &anyhow::Error) {
    let text: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    eprintln!("error: {}", text.join(": "));
}

/// Splits a command line into words; double quotes group words with spaces.
fn split_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

impl Shell {
    /// The runtime and the open session, or "not connected".
    fn connected(&mut self) -> anyhow::Result<(&tokio::runtime::Runtime, &mut RemoteSession)> {
        let Shell { rt, session, .. } = self;
        Ok((rt, session.as_mut().context("not connected: use open URL")?))
    }

    fn settings(&self, resume: bool) -> TransferSettings {
        TransferSettings {
            resume,
            ascii: self.ascii,
            ..TransferSettings::default()
        }
    }

    fn open(&mut self, target: &str) -> anyhow::Result<()> {
        self.close();
        let (remote, url) = self.connect.resolve(target)?;
        let mut remote: Remote = remote;
        remote.options.data_mode = if self.passive {
            DataMode::Passive
        } else {
            DataMode::Active
        };
        let mut session = self.rt.block_on(async {
            let mut s = remote.open().await?;
            if !url.path.is_empty() {
                s.cwd(url.path.trim_end_matches('/')).await?;
            }
            Ok::<_, anyhow::Error>(s)
        })?;
        let about = match session.as_ftp() {
            Some(ftp) => ftp.greeting().lines().join(" "),
            None => "SFTP".to_owned(),
        };
        println!("Connected to {url} ({about})");
        self.session = Some(session);
        self.url = Some(url);
        Ok(())
    }

    fn close(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = self.rt.block_on(s.quit());
        }
    }

    fn execute(&mut self, line: &str) -> anyhow::Result<Flow> {
        let words = split_words(line);
        let Some((command, args)) = words.split_first() else {
            return Ok(Flow::Continue);
        };
        let arg = |i: usize, what: &str| -> anyhow::Result<String> {
            args.get(i)
                .cloned()
                .with_context(|| format!("{command}: missing {what}"))
        };
        match command.to_ascii_lowercase().as_str() {
            "open" => {
                let target = arg(0, "URL or host")?;
                let url = if target.contains("://") {
                    target
                } else {
                    format!(
                        "ftp://{target}:{}/",
                        args.get(1).map_or("21", String::as_str)
                    )
                };
                self.open(&url)?;
            }
            "user" => {
                let name = arg(0, "user name")?;
                let url = self
                    .url
                    .clone()
                    .context("not connected: use open URL first")?;
                let password = args.get(1).cloned();
                let mut with_user = url.clone();
                with_user.user = Some(name);
                with_user.password = password;
                if with_user.password.is_none() && std::io::stdin().is_terminal() {
                    with_user.password = Some(rpassword::prompt_password("Password: ")?);
                }
                self.close();
                let mut options = self.connect.options()?;
                options.data_mode = if self.passive {
                    DataMode::Passive
                } else {
                    DataMode::Active
                };
                let session = self
                    .rt
                    .block_on(RemoteSession::open(&with_user, &options))?;
                println!("Logged in as {}", with_user.user.as_deref().unwrap_or(""));
                self.session = Some(session);
                self.url = Some(with_user);
            }
            "ls" | "nlist" => {
                let path = args.first().cloned().unwrap_or_default();
                let (rt, session) = self.connected()?;
                let mut entries = rt.block_on(session.list(&path))?;
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                for e in entries {
                    if e.kind == ferry_client::EntryKind::Dir {
                        println!("{}/", e.name);
                    } else {
                        println!("{}", e.name);
                    }
                }
            }
            "dir" | "ll" => {
                let path = args.first().cloned().unwrap_or_default();
                let (rt, session) = self.connected()?;
                let mut entries = rt.block_on(session.list(&path))?;
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                for e in &entries {
                    println!("{}", e.long_line());
                }
            }
            "cd" | "cwd" => {
                let path = arg(0, "directory")?;
                let (rt, session) = self.connected()?;
                rt.block_on(session.cwd(&path))?;
                println!("{}", rt.block_on(session.pwd())?);
            }
            "cdup" => {
                let (rt, session) = self.connected()?;
                rt.block_on(session.cdup())?;
                println!("{}", rt.block_on(session.pwd())?);
            }
            "pwd" => {
                let (rt, session) = self.connected()?;
                println!("{}", rt.block_on(session.pwd())?);
            }
            "lcd" => {
                let dir = match args.first() {
                    Some(d) => PathBuf::from(d),
                    None => std::env::var_os("HOME")
                        .map(PathBuf::from)
                        .context("no HOME")?,
                };
                std::env::set_current_dir(&dir).with_context(|| dir.display().to_string())?;
                println!("Local directory now {}", std::env::current_dir()?.display());
            }
            "get" | "recv" | "reget" => {
                let remote = arg(0, "remote file")?;
                let local = PathBuf::from(
                    args.get(1)
                        .cloned()
                        .unwrap_or_else(|| basename(&remote).to_owned()),
                );
                self.get(&remote, &local, command == "reget")?;
            }
            "put" | "send" => {
                let local = PathBuf::from(arg(0, "local file")?);
                let name = local
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("the name is not UTF-8")?;
                let remote = args.get(1).cloned().unwrap_or_else(|| name.to_owned());
                self.put(&local, &remote)?;
            }
            "mget" => {
                if args.is_empty() {
                    bail!("mget: give patterns");
                }
                let (rt, session) = self.connected()?;
                let entries = rt.block_on(session.list(""))?;
                let mut failed = 0;
                for pattern in args {
                    let glob = Glob::new(pattern)?.compile_matcher();
                    let names: Vec<String> = entries
                        .iter()
                        .filter(|e| {
                            e.kind == ferry_client::EntryKind::File && glob.is_match(&e.name)
                        })
                        .map(|e| e.name.clone())
                        .collect();
                    if names.is_empty() {
                        eprintln!("mget: nothing matches {pattern}");
                        failed += 1;
                    }
                    for name in names {
                        if let Err(e) = self.get(&name, Path::new(&name), false) {
                            report(&e);
                            failed += 1;
                        }
                    }
                }
                if failed > 0 {
                    bail!("mget: {failed} failed");
                }
            }
            "mput" => {
                if args.is_empty() {
                    bail!("mput: give patterns");
                }
                let mut failed = 0;
                for pattern in args {
                    let glob = Glob::new(pattern)?.compile_matcher();
                    let mut names: Vec<String> = std::fs::read_dir(".")?
                        .filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                        .filter(|n| glob.is_match(n))
                        .collect();
                    names.sort();
                    if names.is_empty() {
                        eprintln!("mput: nothing matches {pattern}");
                        failed += 1;
                    }
                    for name in names {
                        if let Err(e) = self.put(Path::new(&name), &name) {
                            report(&e);
                            failed += 1;
                        }
                    }
                }
                if failed > 0 {
                    bail!("mput: {failed} failed");
                }
            }
            "delete" | "rm" => {
                let path = arg(0, "remote file")?;
                let (rt, session) = self.connected()?;
                rt.block_on(session.delete(&path))?;
                println!("Deleted {path}");
            }
            "mkdir" => {
                let path = arg(0, "directory")?;
                let (rt, session) = self.connected()?;
                println!("Created {}", rt.block_on(session.mkdir(&path))?);
            }
            "rmdir" => {
                let path = arg(0, "directory")?;
                let (rt, session) = self.connected()?;
                rt.block_on(session.rmdir(&path))?;
                println!("Removed {path}");
            }
            "rename" | "mv" => {
                let (from, to) = (arg(0, "old name")?, arg(1, "new name")?);
                let (rt, session) = self.connected()?;
                rt.block_on(session.rename(&from, &to))?;
                println!("Renamed {from} to {to}");
            }
            "binary" | "bin" | "image" => {
                self.ascii = false;
                println!("Transfers are binary (TYPE I).");
            }
            "ascii" => {
                self.ascii = true;
                println!("Transfers are text (TYPE A).");
            }
            "passive" => {
                self.passive = !self.passive;
                let mode = if self.passive {
                    DataMode::Passive
                } else {
                    DataMode::Active
                };
                if let Some(s) = self.session.as_mut().and_then(RemoteSession::as_ftp) {
                    s.set_data_mode(mode);
                }
                println!("Passive mode {}.", if self.passive { "on" } else { "off" });
            }
            "size" => {
                let path = arg(0, "remote file")?;
                let (rt, session) = self.connected()?;
                match rt.block_on(session.size(&path))? {
                    Some(n) => println!("{path}: {n} bytes"),
                    None => bail!("size: the server does not support SIZE"),
                }
            }
            "modtime" => {
                let path = arg(0, "remote file")?;
                let (rt, session) = self.connected()?;
                match rt.block_on(session.modified(&path))? {
                    Some(t) => println!("{path}: {t}"),
                    None => bail!("modtime: the server does not support MDTM"),
                }
            }
            "status" => {
                match (&self.url, &mut self.session) {
                    (Some(u), Some(s)) => {
                        let how = match s.as_ftp() {
                            Some(ftp) if ftp.is_tls() => " (TLS)",
                            Some(_) => "",
                            None => " (SFTP over SSH)",
                        };
                        println!("Connected to {u}{how}");
                    }
                    _ => println!("Not connected."),
                }
                println!(
                    "Type: {}; passive: {}",
                    if self.ascii { "ascii" } else { "binary" },
                    if self.passive { "on" } else { "off" }
                );
            }
            "quote" | "literal" => {
                if args.is_empty() {
                    bail!("quote: give a command line");
                }
                let line = args.join(" ");
                let (rt, session) = self.connected()?;
                let ftp = session
                    .as_ftp()
                    .context("quote: SFTP has no raw commands (FTP only)")?;
                let reply = rt.block_on(ftp.raw(&line))?;
                for l in reply.lines() {
                    println!("{} {l}", reply.code());
                }
            }
            "close" | "disconnect" => {
                self.close();
                self.url = None;
                println!("Closed.");
            }
            "quit" | "bye" | "exit" => return Ok(Flow::Quit),
            "help" | "?" => match args.first() {
                Some(c) => {
                    let (usage, text) = HELP
                        .iter()
                        .find(|(u, _)| u.split_whitespace().next() == Some(c.as_str()))
                        .with_context(|| format!("help: no command {c}"))?;
                    println!("{usage:24} {text}");
                }
                None => {
                    for (usage, text) in HELP {
                        println!("{usage:24} {text}");
                    }
                }
            },
            other => bail!("{other}: unknown command (try help)"),
        }
        Ok(Flow::Continue)
    }

    fn get(&mut self, remote: &str, local: &Path, resume: bool) -> anyhow::Result<()> {
        let settings = self.settings(resume);
        let (rt, session) = self.connected()?;
        let reporter = Reporter::new(false, false, 1, None);
        let progress = reporter.file(remote);
        let report = rt.block_on(download_file(session, remote, local, &settings, &progress))?;
        reporter.done(progress, report);
        Ok(())
    }

    fn put(&mut self, local: &Path, remote: &str) -> anyhow::Result<()> {
        let settings = self.settings(false);
        let (rt, session) = self.connected()?;
        let reporter = Reporter::new(false, false, 1, None);
        let progress = reporter.file(remote);
        let report = rt.block_on(upload_file(
            session, local, remote, &settings, None, &progress,
        ))?;
        reporter.done(progress, report);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#"get "a b.txt" c"#),
            vec!["get", "a b.txt", "c"]
        );
        assert_eq!(split_words("  ls  "), vec!["ls"]);
        assert_eq!(split_words(r#"put """#), vec!["put", ""]);
        assert!(split_words("").is_empty());
    }
}
