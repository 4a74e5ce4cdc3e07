//! System users: accounts of the host, logging in with the host's password (the
//! crypt hash in the shadow file) into their host home directory.
//!
//! Refused, as if they did not exist: uid 0 (root), accounts whose shell is
//! `nologin` or `false`, locked or passwordless accounts (`!`, `*`, empty), and
//! hashes ferry cannot verify (MD5-crypt `$1$`, DES crypt). The files are read
//! at each login, so host changes apply at once.

use std::path::PathBuf;

use async_trait::async_trait;
use ferry_config::{AccountSettings, PasswordHash};

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
}

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
        }
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
        Ok(Some(AccountSettings {
            password_hash: hash,
            home: Some(account.home),
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
}
