//! Account stores and the authenticator in front of them.
//!
//! A store is a plain source of user and group settings ([`AccountStore`]); the
//! [`Authenticator`] does everything else in one place for every store: password
//! verification, group lookup (a user's groups may live in any store), and the
//! resolution of rules and limits. So the SQLite and PostgreSQL stores carry no
//! policy logic of their own.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use ferry_config::{AccountSettings, AnonymousSection, Config, ConfigError, Permission};
use ferry_storage::VirtualPath;

use crate::limits::Limits;
use crate::password;
use crate::rules::{AccessRules, PermissionSet};

/// What kind of login an account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// A named user with a password, from an account store.
    Virtual,
    /// `anonymous` or `ftp`, with any password.
    Anonymous,
    /// An account of the host (uid, gid): its home is a host directory, and what it
    /// creates is owned by it.
    System { uid: u32, gid: u32 },
}

/// A logged-in identity: who, where its home is, and what it may do.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub kind: AccountKind,
    /// The home, relative to the storage root.
    pub home: VirtualPath,
    pub rules: Arc<AccessRules>,
    pub limits: Arc<Limits>,
}

/// Why a login failed. The server answers the first two with the same 530, so that
/// a client cannot tell a missing user from a wrong password.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no such user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
    /// The SSH public key is not among the user's `authorized_keys` (or the
    /// user has none, as anonymous).
    #[error("public key not authorized for this user")]
    KeyNotAuthorized,
    /// The user lists the key, but with options that refuse this login
    /// (`from="…"` without the client's address, a past `expiry-time`, a
    /// `cert-authority` line): what they say.
    #[error("{0}")]
    KeyRestricted(String),
    /// The host's PAM account step (`pam_acct_mgmt`: expired, locked, outside
    /// its hours, `pam_access`) refused a host account that signed in with a
    /// key.
    #[error("the account was refused by PAM's account step")]
    AccountRefused,
    /// The account's settings cannot be used (a group that does not exist).
    #[error("account is misconfigured: {0}")]
    Misconfigured(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A store failed or refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("account store {store}: {message}")]
    Backend { store: String, message: String },
    /// No user or group of that name.
    #[error("{kind} `{name}` does not exist")]
    NotFound { kind: &'static str, name: String },
    /// The name is taken.
    #[error("{kind} `{name}` already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// The store cannot be written (the configuration file's users).
    #[error("{0} is read-only: change the configuration file instead")]
    ReadOnly(String),
}

/// A source of users and groups.
#[async_trait]
pub trait AccountStore: Send + Sync + fmt::Debug {
    /// A short description for messages (`configuration file`, `sqlite:...`).
    fn describe(&self) -> String;
    async fn user(&self, name: &str) -> Result<Option<AccountSettings>, StoreError>;
    async fn group(&self, name: &str) -> Result<Option<AccountSettings>, StoreError>;
    async fn user_names(&self) -> Result<Vec<String>, StoreError>;
    async fn group_names(&self) -> Result<Vec<String>, StoreError>;

    /// For host accounts: the uid and gid that own what the user creates. Such an
    /// account's home is a host path, not one under `storage.root`.
    fn host_identity(&self, _name: &str) -> Option<(u32, u32)> {
        None
    }

    /// How this store's users' passwords are checked.
    fn password_check(&self) -> PasswordCheck {
        PasswordCheck::Hash
    }
}

/// How an [`AccountStore`]'s passwords are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Against the user's `password_hash`.
    Hash,
    /// By PAM's service of this name (crate::pam): the store has no hashes.
    Pam(String),
}

/// The `[[users]]` and `[[groups]]` of the configuration file. Read-only.
#[derive(Debug, Default)]
pub struct ConfigStore {
    users: HashMap<String, AccountSettings>,
    groups: HashMap<String, AccountSettings>,
}

/// A valid argon2id hash of a random password, verified when the user is unknown so
/// that a missing user takes as long to refuse as a wrong password.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lzYWx0ZGVjb3k$8xFNwqFUrBBRlMDa+kHKoXh1qEDyRpDS5nAQKPPgIKc";

impl ConfigStore {
    /// Builds the store from a checked configuration.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut users = HashMap::new();
        for (i, u) in config.users.iter().enumerate() {
            let settings = u.settings();
            if let Some(h) = &settings.password_hash {
                password::check_hash(h.as_str()).map_err(|e| {
                    ConfigError::new(e.to_string()).at_key(format!("users[{i}].password_hash"))
                })?;
            }
            if let Some(home) = &settings.home {
                VirtualPath::parse_absolute(home).map_err(|e| {
                    ConfigError::new(e.to_string()).at_key(format!("users[{i}].home"))
                })?;
            }
            users.insert(u.name.get_ref().clone(), settings);
        }
        let groups = config
            .groups
            .iter()
            .map(|g| (g.name.get_ref().clone(), g.settings()))
            .collect();
        Ok(ConfigStore { users, groups })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[async_trait]
impl AccountStore for ConfigStore {
    fn describe(&self) -> String {
        "the configuration file".into()
    }

    async fn user(&self, name: &str) -> Result<Option<AccountSettings>, StoreError> {
        Ok(self.users.get(name).cloned())
    }

    async fn group(&self, name: &str) -> Result<Option<AccountSettings>, StoreError> {
        Ok(self.groups.get(name).cloned())
    }

    async fn user_names(&self) -> Result<Vec<String>, StoreError> {
        let mut v: Vec<String> = self.users.keys().cloned().collect();
        v.sort();
        Ok(v)
    }

    async fn group_names(&self) -> Result<Vec<String>, StoreError> {
        let mut v: Vec<String> = self.groups.keys().cloned().collect();
        v.sort();
        Ok(v)
    }
}

/// Password verifications run on their own threads, one per core, taking
/// requests in turn. An argon2id verification takes a core for ~45 ms and
/// 19 MiB of memory. Run anywhere in tokio's blocking pool, a burst of first
/// logins ran them all at once (only waiting for the same cores, holding every
/// verification's memory meanwhile), and each pool thread's allocator arena
/// kept its 19 MiB afterwards: 175 KiB per idle session after 100 parallel
/// first logins (docs/benchmarks.md). On these threads a burst takes as long
/// and keeps the memory of one verification per core.
struct VerifierThreads {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<VerifierJob>>,
}

/// A verification, and where its answer goes.
type VerifierJob = Box<dyn FnOnce() + Send>;

impl VerifierThreads {
    fn start(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<VerifierJob>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ferry-verify-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job.
                        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            // A thread that cannot start leaves the others to do the work;
            // with none, the queue's receiver is gone and every verification
            // fails with "password verification stopped".
            drop(spawned);
        }
        VerifierThreads {
            jobs: std::sync::Mutex::new(jobs),
        }
    }

    /// Runs `work` on one of the threads; waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: VerifierJob = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| AuthError::Misconfigured("password verification stopped".into()))?;
        result
            .await
            .map_err(|_| AuthError::Misconfigured("password verification failed".into()))
    }
}

/// Asks PAM's `service` about `name` (crate::pam::check) on the verifier
/// threads: with `password`, authentication and the account step; without,
/// the account step alone. A module or its backend failing is a store error.
async fn ask_pam(
    service: &str,
    name: &str,
    password: Option<&str>,
    from: Option<std::net::IpAddr>,
) -> Result<bool, AuthError> {
    let (svc, n, p) = (
        service.to_owned(),
        name.to_owned(),
        password.map(str::to_owned),
    );
    let rhost = from.map(|ip| ip.to_string());
    verifier_threads()
        .run(move || crate::pam::check(&svc, &n, p.as_deref(), rhost.as_deref()))
        .await?
        .map_err(|e| {
            AuthError::Store(StoreError::Backend {
                store: format!("PAM service {service}"),
                message: e.message,
            })
        })
}

fn verifier_threads() -> &'static VerifierThreads {
    static THREADS: std::sync::OnceLock<VerifierThreads> = std::sync::OnceLock::new();
    THREADS.get_or_init(|| {
        VerifierThreads::start(std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

async fn verify_off_thread(password: String, hash: String) -> Result<bool, AuthError> {
    verifier_threads()
        .run(move || password::verify(&password, &hash))
        .await?
        .map_err(|e| AuthError::Misconfigured(e.to_string()))
}

/// What an account answers to an SSH key offered before the client signs
/// with it ([`Authenticator::key_authorized`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOffer {
    /// The key is one of the user's `authorized_keys`, and its options
    /// admit the client now.
    Listed,
    /// It is not (or its options refuse it). `names_authority`: the user
    /// lists a `cert-authority`, so the key may be that of a certificate
    /// the authority signed, which the client sends only when signing.
    NotListed { names_authority: bool },
}

impl KeyOffer {
    /// Whether the key is one the user signs in with.
    pub fn is_listed(self) -> bool {
        self == KeyOffer::Listed
    }
}

/// What a user says about OpenSSH certificates
/// ([`Authenticator::certificate_rules`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateRules {
    /// The `cert-authority` lines of the user's `authorized_keys`.
    pub authorities: Vec<ferry_config::AuthorizedKey>,
    /// `ssh_principals`: the names a certificate from a trusted authority
    /// must list one of; empty, the user's own name.
    pub principals: Vec<ferry_config::Principal>,
}

/// The one place the server asks "who is this?": anonymous logins first, then each
/// account store in turn.
#[derive(Debug, Clone)]
pub struct Authenticator {
    stores: Vec<Arc<dyn AccountStore>>,
    anonymous: Option<Account>,
    cache: Arc<crate::cache::VerificationCache>,
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
                limits: Arc::new(Limits::default()),
            })
        } else {
            None
        };
        Ok(Authenticator {
            stores,
            anonymous,
            cache: Arc::new(crate::cache::VerificationCache::new(
                std::time::Duration::ZERO,
            )),
        })
    }

    /// Remembers successful verifications for `ttl` (see [`crate::cache`]).
    pub fn with_login_cache(mut self, ttl: std::time::Duration) -> Self {
        self.cache = Arc::new(crate::cache::VerificationCache::new(ttl));
        self
    }

    /// Whether `name` is one of the anonymous login names.
    pub fn is_anonymous_name(name: &str) -> bool {
        name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("ftp")
    }

    /// Whether anonymous logins are enabled.
    pub fn anonymous_enabled(&self) -> bool {
        self.anonymous.is_some()
    }

    /// The stores, in the order they are asked.
    pub fn stores(&self) -> &[Arc<dyn AccountStore>] {
        &self.stores
    }

    async fn find_user(
        &self,
        name: &str,
    ) -> Result<Option<(AccountSettings, Option<(u32, u32)>)>, StoreError> {
        Ok(self
            .find_user_in_store(name)
            .await?
            .map(|(u, host, _)| (u, host)))
    }

    /// The user's settings, host identity, and how its password is checked.
    async fn find_user_in_store(
        &self,
        name: &str,
    ) -> Result<Option<(AccountSettings, Option<(u32, u32)>, PasswordCheck)>, StoreError> {
        for store in &self.stores {
            if let Some(u) = store.user(name).await? {
                return Ok(Some((u, store.host_identity(name), store.password_check())));
            }
        }
        Ok(None)
    }

    async fn find_group(&self, name: &str) -> Result<Option<AccountSettings>, StoreError> {
        for store in &self.stores {
            if let Some(g) = store.group(name).await? {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    /// Checks a login.
    pub async fn authenticate(&self, name: &str, password: &str) -> Result<Account, AuthError> {
        self.authenticate_from(name, password, None).await
    }

    /// Checks a login from the client at `from` (PAM learns it as PAM_RHOST).
    pub async fn authenticate_from(
        &self,
        name: &str,
        password: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<Account, AuthError> {
        if Self::is_anonymous_name(name) {
            return self.anonymous.clone().ok_or(AuthError::UnknownUser);
        }
        let user = self.find_user_in_store(name).await?;
        if let Some((settings, host, PasswordCheck::Pam(service))) = user {
            // PAM decides (and keeps its own failure delays); nothing is cached,
            // so an account PAM locks or expires is refused at once.
            if !ask_pam(&service, name, Some(password), from).await? {
                return Err(AuthError::WrongPassword);
            }
            return self.resolve(name, &settings, host).await;
        }
        let user = user.map(|(u, host, _)| (u, host));
        let hash = user
            .as_ref()
            .and_then(|(u, _)| u.password_hash.as_ref())
            .map(|h| h.as_str().to_owned());
        let Some(hash) = hash else {
            let _ = verify_off_thread(password.to_owned(), DECOY_HASH.to_owned()).await;
            return Err(AuthError::UnknownUser);
        };
        let now = std::time::Instant::now();
        if !self.cache.recall(name, &hash, password, now) {
            if !verify_off_thread(password.to_owned(), hash.clone()).await? {
                return Err(AuthError::WrongPassword);
            }
            self.cache.remember(name, &hash, password, now);
        }
        let (user, host) = user.ok_or(AuthError::UnknownUser)?;
        self.resolve(name, &user, host).await
    }

    /// Whether `key` (an SSH public key in wire form) is one of `name`'s
    /// `authorized_keys`. SSH asks this before the client proves it holds
    /// the key; a key not listed is not a failed login (clients offer every
    /// key they have).
    ///
    /// A key listed with options (`from="…"`, `expiry-time="…"`) is
    /// authorized only from `from` before it expires, as sshd answers it.
    ///
    /// One lookup answers too whether the user names an authority of its
    /// own (a `cert-authority` line), whose certificates' keys are offered
    /// the same way.
    pub async fn key_authorized(
        &self,
        name: &str,
        key: &[u8],
        from: Option<std::net::IpAddr>,
        now: std::time::SystemTime,
    ) -> Result<KeyOffer, StoreError> {
        let not_listed = KeyOffer::NotListed {
            names_authority: false,
        };
        if Self::is_anonymous_name(name) {
            return Ok(not_listed);
        }
        let Some((user, _)) = self.find_user(name).await? else {
            return Ok(not_listed);
        };
        let names_authority = user
            .authorized_keys
            .iter()
            .any(|k| k.options().cert_authority);
        match key_signs_in(&user, key, from, now) {
            Ok(()) => Ok(KeyOffer::Listed),
            Err(AuthError::KeyRestricted(why)) => {
                // Declined before any signature, so no failed login: said
                // here, or an operator could not tell why the key was not
                // taken.
                tracing::warn!(user = %name, reason = %why, "a listed key was offered, and its options refuse it");
                Ok(KeyOffer::NotListed { names_authority })
            }
            Err(_) => Ok(KeyOffer::NotListed { names_authority }),
        }
    }

    /// What `name` says about OpenSSH certificates: the `cert-authority`
    /// lines of the `authorized_keys` (authorities whose certificates sign
    /// this user in, with the lines' options, which the SSH layer applies)
    /// and `ssh_principals`. Empty for anonymous or an unknown user.
    pub async fn certificate_rules(&self, name: &str) -> Result<CertificateRules, StoreError> {
        if Self::is_anonymous_name(name) {
            return Ok(CertificateRules::default());
        }
        Ok(self
            .find_user(name)
            .await?
            .map(|(user, _)| CertificateRules {
                authorities: user
                    .authorized_keys
                    .into_iter()
                    .filter(|k| k.options().cert_authority)
                    .collect(),
                principals: user.ssh_principals,
            })
            .unwrap_or_default())
    }

    /// Signs `name` in with an SSH public key whose possession the SSH layer
    /// has verified (the client signed the session with it): the key must be
    /// one of the user's `authorized_keys`. No password, so no argon2; a host
    /// account checked by PAM goes through PAM's account step (with `from` as
    /// `PAM_RHOST`), as OpenSSH does after a key login.
    pub async fn authenticate_key_from(
        &self,
        name: &str,
        key: &[u8],
        from: Option<std::net::IpAddr>,
        now: std::time::SystemTime,
    ) -> Result<Account, AuthError> {
        self.authenticate_vouched(name, Some((key, now)), from)
            .await
    }

    /// Signs `name` in with an SSH key an OpenSSH certificate vouches for:
    /// the SSH layer has checked that the client holds the key, that a
    /// trusted authority signed the certificate and that it names `name`.
    /// No key need be listed; the account must exist (not the anonymous
    /// one), and a host account checked by PAM goes through PAM's account
    /// step, as after a key login.
    pub async fn authenticate_certified_from(
        &self,
        name: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<Account, AuthError> {
        self.authenticate_vouched(name, None, from).await
    }

    /// A key login: with `key`, it must be one of the user's
    /// `authorized_keys`; without, a certificate vouched for the user.
    async fn authenticate_vouched(
        &self,
        name: &str,
        key: Option<(&[u8], std::time::SystemTime)>,
        from: Option<std::net::IpAddr>,
    ) -> Result<Account, AuthError> {
        if Self::is_anonymous_name(name) {
            return Err(AuthError::UnknownUser);
        }
        let (user, host, check) = self
            .find_user_in_store(name)
            .await?
            .ok_or(AuthError::UnknownUser)?;
        if let Some((key, now)) = key {
            key_signs_in(&user, key, from, now)?;
        }
        if let PasswordCheck::Pam(service) = check
            && !ask_pam(&service, name, None, from).await?
        {
            return Err(AuthError::AccountRefused);
        }
        self.resolve(name, &user, host).await
    }

    /// [`Authenticator::authenticate_key_from`] without a client address,
    /// now.
    pub async fn authenticate_key(&self, name: &str, key: &[u8]) -> Result<Account, AuthError> {
        self.authenticate_key_from(name, key, None, std::time::SystemTime::now())
            .await
    }

    /// The account of `name` without a password check (for `policy explain`).
    pub async fn account(&self, name: &str) -> Result<Account, AuthError> {
        if Self::is_anonymous_name(name) {
            return self.anonymous.clone().ok_or(AuthError::UnknownUser);
        }
        let (user, host) = self.find_user(name).await?.ok_or(AuthError::UnknownUser)?;
        self.resolve(name, &user, host).await
    }

    /// Builds an account from a user's settings and its groups'.
    async fn resolve(
        &self,
        name: &str,
        user: &AccountSettings,
        host: Option<(u32, u32)>,
    ) -> Result<Account, AuthError> {
        let mut groups = Vec::new();
        for g in &user.groups {
            let settings = self.find_group(g).await?.ok_or_else(|| {
                AuthError::Misconfigured(format!(
                    "user {name} is in group `{g}`, which does not exist"
                ))
            })?;
            groups.push((g.clone(), settings));
        }
        let home_text = user.home.clone().unwrap_or_else(|| format!("/{name}"));
        let home = VirtualPath::parse_absolute(&home_text)
            .map_err(|e| AuthError::Misconfigured(format!("home {home_text}: {e}")))?;
        let rules = AccessRules::from_tables(
            &user.permissions,
            groups.iter().map(|(n, g)| (n.as_str(), &g.permissions)),
        )
        .map_err(|e| AuthError::Misconfigured(format!("permissions: {e}")))?;
        let limits = Limits::resolve(name, user, &groups);
        Ok(Account {
            name: name.to_owned(),
            kind: match host {
                Some((uid, gid)) => AccountKind::System { uid, gid },
                None => AccountKind::Virtual,
            },
            home,
            rules: Arc::new(rules),
            limits: Arc::new(limits),
        })
    }
}

/// Whether one of `user`'s `authorized_keys` lines signs in the holder of
/// `key` from `from` at `now` (sshd tries every line that lists the key).
/// A listed key that its options refuse says why.
fn key_signs_in(
    user: &AccountSettings,
    key: &[u8],
    from: Option<std::net::IpAddr>,
    now: std::time::SystemTime,
) -> Result<(), AuthError> {
    let mut refused = None;
    for line in &user.authorized_keys {
        match line.signs_in(key, from, now) {
            Some(Ok(())) => return Ok(()),
            Some(Err(why)) => refused = refused.or(Some(why)),
            None => {}
        }
    }
    Err(refused.map_or(AuthError::KeyNotAuthorized, AuthError::KeyRestricted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifications_run_on_their_own_threads_in_turn() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let threads = Arc::new(super::VerifierThreads::start(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (threads, running, most) = (threads.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    threads
                        .run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            running.fetch_sub(1, Ordering::SeqCst);
                            std::thread::current().name().map(str::to_owned)
                        })
                        .await
                })
            })
            .collect();
        let mut names = std::collections::BTreeSet::new();
        for t in tasks {
            names.insert(t.await.expect("task").expect("ran").expect("named"));
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "never more than the threads at once"
        );
        assert_eq!(
            names.len(),
            2,
            "the same two threads do all the work: {names:?}"
        );
    }

    fn config(text: &str) -> Config {
        Config::parse(text).expect("config")
    }

    #[tokio::test]
    async fn public_keys_sign_in_only_the_users_that_list_them() {
        use std::time::{Duration, SystemTime, UNIX_EPOCH};
        let alice_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHOW7n+TV5zOQGr72zD3Uvxe2rkYTk+2qquNn7Hp9Cjv alice@laptop";
        let other = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBGjLBxZ0h8kRG3lK4+4dMNlcMkVLlKas3FAGeRA6ALhto1CHLLM6H4E+GEzVal3nfz3ce/siPEn0S87G1hY2Lo= root@vm";
        let hash = password::hash("pw").expect("hash");
        let c = config(&format!(
            "[anonymous]\nenabled = true\n[[users]]\nname = \"alice\"\nauthorized_keys = [\"{alice_key}\"]\n[[users]]\nname = \"bob\"\npassword_hash = \"{hash}\"\n"
        ));
        let store = ConfigStore::from_config(&c).expect("store");
        let auth = Authenticator::new(vec![Arc::new(store)], &c.anonymous).expect("auth");
        let blob = |line: &str| {
            line.parse::<ferry_config::AuthorizedKey>()
                .expect("key")
                .blob()
                .to_vec()
        };
        let (alice_blob, other_blob) = (blob(alice_key), blob(other));

        assert_eq!(
            auth.key_authorized("alice", &alice_blob, None, SystemTime::now())
                .await
                .expect("store"),
            KeyOffer::Listed
        );
        let a = auth
            .authenticate_key("alice", &alice_blob)
            .await
            .expect("login");
        assert_eq!(
            (a.name.as_str(), a.home.to_string()),
            ("alice", "/alice".into())
        );
        // Another key, another user's key, users without keys, anonymous.
        for (user, blob) in [("alice", &other_blob), ("bob", &alice_blob)] {
            assert_eq!(
                auth.key_authorized(user, blob, None, SystemTime::now())
                    .await
                    .expect("store"),
                KeyOffer::NotListed {
                    names_authority: false
                },
                "{user}"
            );
            assert!(
                matches!(
                    auth.authenticate_key(user, blob).await,
                    Err(AuthError::KeyNotAuthorized)
                ),
                "{user}"
            );
        }
        assert!(
            !auth
                .key_authorized("anonymous", &alice_blob, None, SystemTime::now())
                .await
                .expect("store")
                .is_listed()
        );
        assert!(matches!(
            auth.authenticate_key("nobody", &alice_blob).await,
            Err(AuthError::UnknownUser)
        ));
        // A user with keys only has no password that works.
        assert!(auth.authenticate("alice", "").await.is_err());
        assert!(auth.authenticate("alice", "pw").await.is_err());

        // Options: `from` and `expiry-time` are kept; a `cert-authority`
        // line is not a key to sign in with, but an authority.

        let c = config(&format!(
            "[[users]]\nname = \"carol\"\nauthorized_keys = [\"from=\\\"10.0.0.0/8\\\" {alice_key}\", \"expiry-time=\\\"20200101\\\" {other}\"]\n\
             [[users]]\nname = \"dave\"\nauthorized_keys = [\"cert-authority {alice_key}\"]\n"
        ));
        let store = ConfigStore::from_config(&c).expect("store");
        let auth = Authenticator::new(vec![Arc::new(store)], &c.anonymous).expect("auth");
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().expect("ip"));
        let (before, after) = (
            UNIX_EPOCH + Duration::from_secs(1_577_836_799),
            UNIX_EPOCH + Duration::from_secs(1_577_836_800),
        );
        for (user, blob, from, now, refusal) in [
            ("carol", &alice_blob, ip("10.1.2.3"), after, None),
            (
                "carol",
                &alice_blob,
                ip("127.0.0.1"),
                after,
                Some("not for clients from 127.0.0.1"),
            ),
            (
                "carol",
                &alice_blob,
                None,
                after,
                Some("only for clients from 10.0.0.0/8"),
            ),
            ("carol", &other_blob, None, before, None),
            ("carol", &other_blob, None, after, Some("expired")),
            (
                "dave",
                &alice_blob,
                ip("10.1.2.3"),
                before,
                Some("cert-authority"),
            ),
        ] {
            let offer = auth
                .key_authorized(user, blob, from, now)
                .await
                .expect("store");
            // Only dave names an authority of his own.
            if !offer.is_listed() {
                assert_eq!(
                    offer,
                    KeyOffer::NotListed {
                        names_authority: user == "dave"
                    },
                    "{user} {from:?}"
                );
            }
            let authorized = offer.is_listed();
            let login = auth.authenticate_key_from(user, blob, from, now).await;
            match refusal {
                None => assert!(authorized && login.is_ok(), "{user} {from:?}: {login:?}"),
                Some(why) => {
                    assert!(!authorized, "{user} {from:?}");
                    assert!(
                        matches!(&login, Err(AuthError::KeyRestricted(w)) if w.contains(why)),
                        "{user} {from:?}: {login:?}"
                    );
                }
            }
        }
        for (user, expected) in [("dave", 1), ("carol", 0), ("anonymous", 0), ("nobody", 0)] {
            let rules = auth.certificate_rules(user).await.expect("store");
            assert_eq!(rules.authorities.len(), expected, "{user}");
            assert!(
                rules
                    .authorities
                    .iter()
                    .all(|k| k.blob() == alice_blob.as_slice())
            );
        }
    }

    #[tokio::test]
    async fn config_users_log_in() {
        let hash = password::hash("pw").expect("hash");
        let c = config(&format!(
            "[anonymous]\nenabled = true\n[[groups]]\nname = \"g\"\nmax_sessions = 3\n[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\ngroups = [\"g\"]\n"
        ));
        let store = ConfigStore::from_config(&c).expect("store");
        let auth = Authenticator::new(vec![Arc::new(store)], &c.anonymous).expect("auth");
        let a = auth.authenticate("alice", "pw").await.expect("login");
        assert_eq!(a.home.to_string(), "/alice");
        assert_eq!(a.kind, AccountKind::Virtual);
        assert_eq!(a.limits.max_sessions.as_ref().map(|s| s.value), Some(3));
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

    #[tokio::test]
    async fn cached_logins_still_refuse_wrong_passwords() {
        let hash = password::hash("pw").expect("hash");
        let c = config(&format!(
            "[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n"
        ));
        let store = ConfigStore::from_config(&c).expect("store");
        let auth = Authenticator::new(vec![Arc::new(store)], &c.anonymous)
            .expect("auth")
            .with_login_cache(std::time::Duration::from_secs(60));
        assert!(auth.authenticate("alice", "pw").await.is_ok());
        assert!(
            auth.authenticate("alice", "pw").await.is_ok(),
            "a returning user"
        );
        assert!(matches!(
            auth.authenticate("alice", "pW").await,
            Err(AuthError::WrongPassword)
        ));
        assert!(matches!(
            auth.authenticate("nobody", "pw").await,
            Err(AuthError::UnknownUser)
        ));
    }

    #[test]
    fn decoy_hash_is_valid() {
        assert!(password::check_hash(DECOY_HASH).is_ok());
    }
}
