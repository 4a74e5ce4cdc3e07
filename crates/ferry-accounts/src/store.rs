//! Account stores and the authenticator in front of them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ferry_config::{AnonymousSection, Config, ConfigError, Permission};
use ferry_storage::VirtualPath;

use crate::password;
use crate::rules::{AccessRules, PermissionSet};

/// What kind of login an account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// A named user with a password, from an account store.
    Virtual,
    /// `anonymous` or `ftp`, with any password.
    Anonymous,
}

/// A logged-in identity: who, where its home is, and what it may do.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub kind: AccountKind,
    /// The home, relative to the storage root.
    pub home: VirtualPath,
    pub rules: Arc<AccessRules>,
}

/// Why a login failed. The server answers every variant with the same 530, so that
/// a client cannot tell a missing user from a wrong password; the variants are for
/// logs and tests.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no such user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
    #[error("account store failed: {0}")]
    Store(String),
}

/// A source of accounts.
#[async_trait]
pub trait AccountStore: Send + Sync + fmt::Debug {
    /// Checks a name and password, and returns the account.
    async fn authenticate(&self, name: &str, password: &str) -> Result<Account, AuthError>;
    /// Whether the store knows `name` (without checking a password).
    async fn contains(&self, name: &str) -> Result<bool, AuthError>;
}

#[derive(Debug)]
struct ConfigUser {
    hash: String,
    home: VirtualPath,
    rules: Arc<AccessRules>,
}

/// The `[[users]]` and `[[groups]]` of the configuration file. Read-only.
#[derive(Debug, Default)]
pub struct ConfigStore {
    users: HashMap<String, ConfigUser>,
}

/// A valid argon2id hash of a random password, verified when the user is unknown so
/// that a missing user takes as long to refuse as a wrong password.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lzYWx0ZGVjb3k$8xFNwqFUrBBRlMDa+kHKoXh1qEDyRpDS5nAQKPPgIKc";

impl ConfigStore {
    /// Builds the store from a checked configuration.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let groups: HashMap<&str, _> = config
            .groups
            .iter()
            .map(|g| (g.name.get_ref().as_str(), &g.permissions))
            .collect();
        let mut users = HashMap::new();
        for (i, u) in config.users.iter().enumerate() {
            let name = u.name.get_ref().clone();
            let err =
                |key: &str, m: String| ConfigError::new(m).at_key(format!("users[{i}].{key}"));
            password::check_hash(u.password_hash.as_str())
                .map_err(|e| err("password_hash", e.to_string()))?;
            let home_text = u.home.clone().unwrap_or_else(|| format!("/{name}"));
            let home =
                VirtualPath::parse_absolute(&home_text).map_err(|e| err("home", e.to_string()))?;
            let user_groups = u
                .groups
                .iter()
                .filter_map(|g| groups.get(g.as_str()).map(|t| (g.as_str(), *t)));
            let rules = AccessRules::from_tables(&u.permissions, user_groups)
                .map_err(|e| err("permissions", e.to_string()))?;
            users.insert(
                name,
                ConfigUser {
                    hash: u.password_hash.as_str().to_owned(),
                    home,
                    rules: Arc::new(rules),
                },
            );
        }
        Ok(ConfigStore { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

async fn verify_off_thread(password: String, hash: String) -> Result<bool, AuthError> {
    tokio::task::spawn_blocking(move || password::verify(&password, &hash))
        .await
        .map_err(|e| AuthError::Store(e.to_string()))?
        .map_err(|e| AuthError::Store(e.to_string()))
}

#[async_trait]
impl AccountStore for ConfigStore {
    async fn authenticate(&self, name: &str, pw: &str) -> Result<Account, AuthError> {
        let Some(user) = self.users.get(name) else {
            let _ = verify_off_thread(pw.to_owned(), DECOY_HASH.to_owned()).await;
            return Err(AuthError::UnknownUser);
        };
        if !verify_off_thread(pw.to_owned(), user.hash.clone()).await? {
            return Err(AuthError::WrongPassword);
        }
        Ok(Account {
            name: name.to_owned(),
            kind: AccountKind::Virtual,
            home: user.home.clone(),
            rules: user.rules.clone(),
        })
    }

    async fn contains(&self, name: &str) -> Result<bool, AuthError> {
        Ok(self.users.contains_key(name))
    }
}

/// The one place the server asks "who is this?": anonymous logins first, then each
/// account store in turn.
#[derive(Debug, Clone)]
pub struct Authenticator {
    stores: Vec<Arc<dyn AccountStore>>,
    anonymous: Option<Account>,
}

impl Authenticator {
    pub fn new(
        stores: Vec<Arc<dyn AccountStore>>,
        anonymous: &AnonymousSection,
    ) -> Result<Self, ConfigError> {
        let anonymous = if anonymous.enabled {
            let home = VirtualPath::parse_absolute(&anonymous.home)
                .map_err(|e| ConfigError::new(e.to_string()).at_key("anonymous.home"))?;
            let (why, perms) = if anonymous.writable {
                (
                    "anonymous upload-only access",
                    PermissionSet::of(&[
                        Permission::List,
                        Permission::Download,
                        Permission::Upload,
                        Permission::Mkdir,
                    ]),
                )
            } else {
                (
                    "anonymous read-only access",
                    PermissionSet::of(&[Permission::List, Permission::Download]),
                )
            };
            Some(Account {
                name: "anonymous".into(),
                kind: AccountKind::Anonymous,
                home,
                rules: Arc::new(AccessRules::builtin(why, perms)),
            })
        } else {
            None
        };
        Ok(Authenticator { stores, anonymous })
    }

    /// Whether `name` is one of the anonymous login names.
    pub fn is_anonymous_name(name: &str) -> bool {
        name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("ftp")
    }

    /// Whether anonymous logins are enabled.
    pub fn anonymous_enabled(&self) -> bool {
        self.anonymous.is_some()
    }

    /// Checks a login.
    pub async fn authenticate(&self, name: &str, password: &str) -> Result<Account, AuthError> {
        if Self::is_anonymous_name(name) {
            return self.anonymous.clone().ok_or(AuthError::UnknownUser);
        }
        for store in &self.stores {
            match store.authenticate(name, password).await {
                Err(AuthError::UnknownUser) => continue,
                other => return other,
            }
        }
        Err(AuthError::UnknownUser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).expect("config")
    }

    #[tokio::test]
    async fn config_users_log_in() {
        let hash = password::hash("pw").expect("hash");
        let c = config(&format!(
            "[anonymous]\nenabled = true\n[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n"
        ));
        let store = ConfigStore::from_config(&c).expect("store");
        let auth = Authenticator::new(vec![Arc::new(store)], &c.anonymous).expect("auth");
        let a = auth.authenticate("alice", "pw").await.expect("login");
        assert_eq!(a.home.to_string(), "/alice");
        assert_eq!(a.kind, AccountKind::Virtual);
        assert!(matches!(
            auth.authenticate("alice", "nope").await,
            Err(AuthError::WrongPassword)
        ));
        assert!(matches!(
            auth.authenticate("bob", "pw").await,
            Err(AuthError::UnknownUser)
        ));
        let anon = auth
            .authenticate("FTP", "me@example.com")
            .await
            .expect("anon");
        assert_eq!(anon.kind, AccountKind::Anonymous);
        assert!(!anon.rules.allows(Permission::Upload, &VirtualPath::root()));
        assert!(
            anon.rules
                .allows(Permission::Download, &VirtualPath::root())
        );
    }

    #[tokio::test]
    async fn anonymous_off_by_default_and_writable_is_upload_only() {
        let c = config("");
        let auth = Authenticator::new(vec![], &c.anonymous).expect("auth");
        assert!(auth.authenticate("anonymous", "x").await.is_err());
        let c = config("[anonymous]\nenabled = true\nwritable = true\n");
        let auth = Authenticator::new(vec![], &c.anonymous).expect("auth");
        let a = auth.authenticate("anonymous", "x").await.expect("anon");
        let root = VirtualPath::root();
        assert!(a.rules.allows(Permission::Upload, &root));
        for p in [
            Permission::Overwrite,
            Permission::Delete,
            Permission::Rename,
            Permission::Append,
        ] {
            assert!(!a.rules.allows(p, &root), "{p:?}");
        }
    }

    #[test]
    fn decoy_hash_is_valid() {
        assert!(password::check_hash(DECOY_HASH).is_ok());
    }
}
