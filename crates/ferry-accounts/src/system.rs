//! System users: accounts of the host, logging in with the host's password (the
//! crypt hash in the shadow file) into their host home directory.
//!
//! Refused, as if they did not exist: uid 0 (root), accounts whose shell is
//! `nologin` or `false`, locked or passwordless accounts (`!`, `*`, empty), and
//! hashes ferry cannot verify (MD5-crypt `$1$`, DES crypt). The files are read
//! at each login, so host changes apply at once.
//!
//! Over SFTP a host account may also sign in with the keys of its own
//! `~/.ssh/authorized_keys`, read at each login and checked as OpenSSH's
//! StrictModes does: the home, `~/.ssh` and the file must belong to the
//! account or to root and be writable by no one else, and the file must not
//! be a symbolic link; otherwise no key of it is taken. Options before a
//! key are kept as sshd keeps them (`from="…"`, `expiry-time="…"`,
//! `cert-authority`; ferry_config's `key_options`). Lines ferry cannot use
//! (an option it cannot keep, such as a `command=` other than SFTP; key
//! types it does not verify) are skipped with a warning naming the file and
//! line: a key whose restrictions ferry cannot honour does not sign anyone
//! in.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ferry_config::{AccountSettings, AuthorizedKey, PasswordHash};
use tracing::warn;

use crate::store::{AccountStore, PasswordCheck, StoreError};

/// A host account, as the passwd file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAccount {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// The accounts of the host.
#[derive(Debug, Clone)]
pub struct SystemStore {
    passwd: PathBuf,
    shadow: PathBuf,
    auth: SystemAuth,
    /// Whether `~/.ssh/authorized_keys` is read (`accounts.system_authorized_keys`).
    authorized_keys: bool,
}

/// Where a host account's keys are, under its home.
pub const AUTHORIZED_KEYS_FILE: &str = ".ssh/authorized_keys";

/// The most of an `authorized_keys` file read: the account's owner writes it,
/// and it is read at every login.
const MAX_AUTHORIZED_KEYS_BYTES: u64 = 1 << 20;

/// How host accounts' passwords are checked (`accounts.system_auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemAuth {
    /// Against the hash in the shadow file.
    Shadow,
    /// By this PAM service (`accounts.pam_service`); the shadow file is not read.
    Pam(String),
}

impl SystemStore {
    pub fn new(passwd: PathBuf, shadow: PathBuf, auth: SystemAuth) -> Self {
        SystemStore {
            passwd,
            shadow,
            auth,
            authorized_keys: true,
        }
    }

    /// Whether host accounts' `~/.ssh/authorized_keys` are read (on by default).
    pub fn reading_authorized_keys(mut self, on: bool) -> Self {
        self.authorized_keys = on;
        self
    }

    /// The keys of `account`'s `~/.ssh/authorized_keys` that ferry can use;
    /// none when the file is missing or fails the ownership and mode checks
    /// (each refusal logged with its reason).
    fn host_authorized_keys(&self, account: &HostAccount) -> Vec<AuthorizedKey> {
        if !self.authorized_keys {
            return Vec::new();
        }
        let path = Path::new(&account.home).join(AUTHORIZED_KEYS_FILE);
        let text = match read_owned_file(&path, account.uid) {
            Ok(Some(text)) => text,
            Ok(None) => return Vec::new(),
            Err(reason) => {
                warn!(user = %account.name, file = %path.display(), "authorized_keys not read: {reason}");
                return Vec::new();
            }
        };
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse::<AuthorizedKey>() {
                Ok(key) => keys.push(key),
                Err(reason) => warn!(
                    user = %account.name,
                    file = %path.display(),
                    line = n + 1,
                    "authorized_keys line skipped: {reason}"
                ),
            }
        }
        keys
    }

    /// Whether `name` may log in at all: a host account allowed over FTP,
    /// with a hash ferry can check in the shadow file (unless PAM checks).
    fn may_log_in(
        &self,
        name: &str,
    ) -> Result<Option<(HostAccount, Option<PasswordHash>)>, StoreError> {
        let Some(account) = self.host_account(name)? else {
            return Ok(None);
        };
        match self.auth {
            SystemAuth::Pam(_) => Ok(Some((account, None))),
            SystemAuth::Shadow => Ok(self.hash_of(name)?.map(|h| (account, Some(h)))),
        }
    }

    fn err(&self, path: &std::path::Path, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            store: format!("system accounts ({})", path.display()),
            message: e.to_string(),
        }
    }

    /// The host account `name`, if it may log in over FTP at all.
    pub fn host_account(&self, name: &str) -> Result<Option<HostAccount>, StoreError> {
        let text = std::fs::read_to_string(&self.passwd).map_err(|e| self.err(&self.passwd, e))?;
        let Some(account) = text
            .lines()
            .filter_map(parse_passwd)
            .find(|a| a.name == name)
        else {
            return Ok(None);
        };
        let shell = account.shell.rsplit('/').next().unwrap_or("");
        if account.uid == 0
            || shell == "nologin"
            || shell == "false"
            || !account.home.starts_with('/')
        {
            return Ok(None);
        }
        Ok(Some(account))
    }

    fn hash_of(&self, name: &str) -> Result<Option<PasswordHash>, StoreError> {
        let text = std::fs::read_to_string(&self.shadow).map_err(|e| self.err(&self.shadow, e))?;
        let hash = text.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.next().unwrap_or("").to_owned())
        });
        // Locked, passwordless and unverifiable hashes all mean: no FTP login.
        Ok(hash.and_then(|h| h.parse().ok()))
    }
}

/// The text of `path` when OpenSSH's StrictModes would take it for the
/// account `uid`: the file and the directories from it up to the home belong
/// to `uid` or root and are writable by no one else; the file is a regular
/// file, not a symbolic link, and at most [`MAX_AUTHORIZED_KEYS_BYTES`]
/// long. `Ok(None)` when there is no file.
fn read_owned_file(path: &Path, uid: u32) -> Result<Option<String>, String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("it is a symbolic link".into());
        }
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    check_owner_and_mode(&path.display().to_string(), &meta, uid)?;
    // `~/.ssh` and the home.
    for dir in path.ancestors().skip(1).take(2) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        check_owner_and_mode(&dir.display().to_string(), &meta, uid)?;
    }
    if meta.len() > MAX_AUTHORIZED_KEYS_BYTES {
        return Err(format!(
            "it is longer than {MAX_AUTHORIZED_KEYS_BYTES} bytes"
        ));
    }
    let mut text = String::new();
    file.take(MAX_AUTHORIZED_KEYS_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(Some(text))
}

/// StrictModes: owned by the account or root, writable by neither group nor
/// others.
fn check_owner_and_mode(what: &str, meta: &std::fs::Metadata, uid: u32) -> Result<(), String> {
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!(
            "bad ownership: {what} belongs to uid {}, not to the account or root",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "bad modes: {what} is writable by its group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn parse_passwd(line: &str) -> Option<HostAccount> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 || line.starts_with('#') {
        return None;
    }
    Some(HostAccount {
        name: f[0].to_owned(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].to_owned(),
        shell: f[6].to_owned(),
    })
}

#[async_trait]
impl AccountStore for SystemStore {
    fn describe(&self) -> String {
        format!("system accounts ({})", self.passwd.display())
    }

    async fn user(&self, name: &str) -> Result<Option<AccountSettings>, StoreError> {
        let Some((account, hash)) = self.may_log_in(name)? else {
            return Ok(None);
        };
        let authorized_keys = self.host_authorized_keys(&account);
        Ok(Some(AccountSettings {
            password_hash: hash,
            home: Some(account.home),
            authorized_keys,
            ..Default::default()
        }))
    }

    async fn group(&self, _name: &str) -> Result<Option<AccountSettings>, StoreError> {
        Ok(None)
    }

    async fn user_names(&self) -> Result<Vec<String>, StoreError> {
        let text = std::fs::read_to_string(&self.passwd).map_err(|e| self.err(&self.passwd, e))?;
        let mut names = Vec::new();
        for a in text.lines().filter_map(parse_passwd) {
            if self.may_log_in(&a.name)?.is_some() {
                names.push(a.name);
            }
        }
        Ok(names)
    }

    async fn group_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    fn host_identity(&self, name: &str) -> Option<(u32, u32)> {
        self.host_account(name)
            .ok()
            .flatten()
            .map(|a| (a.uid, a.gid))
    }

    fn password_check(&self) -> PasswordCheck {
        match &self.auth {
            SystemAuth::Shadow => PasswordCheck::Hash,
            SystemAuth::Pam(service) => PasswordCheck::Pam(service.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

    #[tokio::test]
    async fn refuses_root_nologin_locked_and_unverifiable() {
        let dir = tempfile::tempdir().expect("tmp");
        let passwd = dir.path().join("passwd");
        let shadow = dir.path().join("shadow");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/bash\nsvc:x:998:998::/var/svc:/usr/sbin/nologin\n\
             lock:x:1001:1001::/home/lock:/bin/sh\nmd5:x:1002:1002::/home/md5:/bin/sh\nfalse:x:1003:1003::/home/f:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(
            &shadow,
            format!("root:{HASH}:1::::::\nbob:{HASH}:1::::::\nsvc:{HASH}:1::::::\nlock:!{HASH}:1::::::\nmd5:$1$salt$qJH7.N4xYta3aEG/dfqo/0:1::::::\nfalse:{HASH}:1::::::\n"),
        )
        .expect("shadow");
        let store = SystemStore::new(passwd, shadow, SystemAuth::Shadow);
        let bob = store
            .user("bob")
            .await
            .expect("bob")
            .expect("bob may log in");
        assert_eq!(bob.home.as_deref(), Some("/home/bob"));
        assert_eq!(store.host_identity("bob"), Some((1000, 1000)));
        for refused in ["root", "svc", "lock", "md5", "false", "nobody"] {
            assert!(
                store.user(refused).await.expect("lookup").is_none(),
                "{refused}"
            );
        }
        assert_eq!(store.user_names().await.expect("names"), ["bob"]);
    }

    /// Made with `ssh-keygen -t ed25519 -C alice@laptop`.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHOW7n+TV5zOQGr72zD3Uvxe2rkYTk+2qquNn7Hp9Cjv alice@laptop";
    /// Made with `ssh-keygen -t rsa -b 1024`: too short.
    const SHORT_RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC+JVQ6k65lWLa1WW15fE+nYi7EOJRSoq8V3uAZMqTw6cRBmw/MypZ1QS6K9IYH1zQTxv5TwKD0WdTW5hUS66kLsttqsQbKoGW99nthKWrBB0dILyBrEeAL59Iqntk4axDJYe5wWzgkv6+/vEqg0++nnsuzBDX3rOzrDyw5+YzAqQ== old@box";

    /// A store with one host account, kim (our own uid), whose home is a
    /// fresh directory holding `~/.ssh/authorized_keys` with `keys`.
    fn kim(keys: &str) -> (SystemStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tmp");
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).expect("ssh dir");
        std::fs::write(home.join(AUTHORIZED_KEYS_FILE), keys).expect("keys");
        // Our own uid (the owner of what we just made), or as root (uid 0
        // never logs in) an account's, to whom the home is handed.
        let mut uid = std::fs::metadata(dir.path()).expect("meta").uid();
        if uid == 0 {
            uid = 4321;
            for p in [&home, &home.join(".ssh"), &home.join(AUTHORIZED_KEYS_FILE)] {
                std::os::unix::fs::chown(p, Some(uid), None).expect("chown");
            }
        }
        std::fs::write(
            dir.path().join("passwd"),
            format!("kim:x:{uid}:{uid}::{}:/bin/sh\n", home.display()),
        )
        .expect("passwd");
        std::fs::write(dir.path().join("shadow"), format!("kim:{HASH}:1::::::\n")).expect("shadow");
        let store = SystemStore::new(
            dir.path().join("passwd"),
            dir.path().join("shadow"),
            SystemAuth::Shadow,
        );
        (store, dir)
    }

    async fn keys_of(store: &SystemStore) -> Vec<String> {
        let kim = store.user("kim").await.expect("lookup").expect("kim");
        kim.authorized_keys.iter().map(|k| k.to_string()).collect()
    }

    #[tokio::test]
    async fn host_accounts_keys_are_read_as_openssh_strict_modes_allow() {
        use std::os::unix::fs::PermissionsExt;
        // Comments and blank lines pass; a line with options ferry keeps is
        // taken with them; one forcing a command other than SFTP and a short
        // RSA key are skipped.
        let file = format!(
            "# laptop\n\n{KEY}\nrestrict,from=\"10.0.0.0/8\" {KEY}\ncommand=\"/bin/sh\" {KEY}\n{SHORT_RSA}\n"
        );
        let (store, dir) = kim(&file);
        let all = [
            KEY.to_owned(),
            format!("restrict,from=\"10.0.0.0/8\" {KEY}"),
        ];
        assert_eq!(keys_of(&store).await, all);
        let home = dir.path().join("home");
        let keys = home.join(AUTHORIZED_KEYS_FILE);

        // Switched off: no keys.
        let off = SystemStore::new(
            dir.path().join("passwd"),
            dir.path().join("shadow"),
            SystemAuth::Shadow,
        )
        .reading_authorized_keys(false);
        assert!(keys_of(&off).await.is_empty());

        // Writable by others, at any of the three levels: no keys.
        for (path, mode) in [(&keys, 0o600), (&home.join(".ssh"), 0o700), (&home, 0o755)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o020))
                .expect("chmod");
            assert!(
                keys_of(&store).await.is_empty(),
                "{} group-writable",
                path.display()
            );
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(keys_of(&store).await, all);
        }

        // A symbolic link to another file: not followed.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(&keys, &elsewhere).expect("move");
        std::os::unix::fs::symlink(&elsewhere, &keys).expect("symlink");
        assert!(keys_of(&store).await.is_empty());
        std::fs::remove_file(&keys).expect("unlink");
        // No file: no keys, and the account still signs in by password.
        assert!(keys_of(&store).await.is_empty());

        // Root's file is taken (as OpenSSH does); another account's is not
        // (only root can hand it over).
        if std::fs::metadata(dir.path()).expect("meta").uid() == 0 {
            std::fs::rename(&elsewhere, &keys).expect("move back");
            std::os::unix::fs::chown(&keys, Some(0), None).expect("chown");
            assert_eq!(keys_of(&store).await, all);
            std::os::unix::fs::chown(&keys, Some(4322), None).expect("chown");
            assert!(keys_of(&store).await.is_empty());
        }
    }
}
