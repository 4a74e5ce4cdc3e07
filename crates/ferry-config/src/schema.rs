//! The sections and keys of `ferry.toml` (see docs/config.md for each key).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::authorized_key::AuthorizedKey;
use crate::error::{ConfigError, line_of};
use crate::limits::{ByteRate, Cidr, FilePattern, LoginHours};
use crate::units::{ByteSize, CongestionControl, HumanDuration, PortRange};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub accounts: AccountsSection,
    #[serde(default)]
    pub anonymous: AnonymousSection,
    #[serde(default)]
    pub security: SecuritySection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub sftp: SftpSection,
    #[serde(default)]
    pub groups: Vec<GroupEntry>,
    #[serde(default)]
    pub users: Vec<UserEntry>,
}

/// `[server]`: listeners, passive ports, timeouts and connection caps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: Vec<SocketAddr>,
    pub passive_ports: Option<PortRange>,
    pub public_address: Option<IpAddr>,
    pub banner: String,
    pub idle_timeout: HumanDuration,
    pub data_timeout: HumanDuration,
    /// How long a new connection may take to log in.
    pub login_timeout: HumanDuration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// After SIGINT/SIGTERM, how long transfers in flight may take to finish.
    pub shutdown_grace: HumanDuration,
    /// Plain binary downloads from local disk go through sendfile(2) (vsftpd's
    /// `use_sendfile`); off, they are copied through a buffer.
    pub sendfile: bool,
    /// How many transfers may run at once as a blocking loop on a thread of
    /// their own (plain uploads, PROT P downloads); the rest take the async
    /// path.
    pub max_blocking_transfers: usize,
    /// The TCP congestion control of data connections whose two ends are on
    /// this host (a loopback address), where there is no link to pace for.
    pub loopback_congestion_control: CongestionControl,
    /// Listings of directories with at most this many entries are sent in
    /// name order; larger ones in the storage's order (0: never sorted).
    pub listing_sort_limit: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2121))],
            passive_ports: None,
            public_address: None,
            banner: "ferry ready".into(),
            idle_timeout: HumanDuration(Duration::from_secs(300)),
            data_timeout: HumanDuration(Duration::from_secs(60)),
            login_timeout: HumanDuration(Duration::from_secs(60)),
            max_connections: 1000,
            max_connections_per_ip: 50,
            shutdown_grace: HumanDuration(Duration::from_secs(30)),
            sendfile: true,
            max_blocking_transfers: 256,
            loopback_congestion_control: CongestionControl::cubic(),
            listing_sort_limit: 10_000,
        }
    }
}

/// `[storage]`: where files live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub backend: StorageBackendKind,
    /// `backend = "local"`: the directory the homes live under.
    pub root: PathBuf,
    /// `backend = "s3"`: the bucket (it must exist).
    pub bucket: Option<String>,
    /// `backend = "s3"`: an S3-compatible server's address (MinIO, Ceph,
    /// Garage, ...), `http://` allowed; AWS's regional endpoint when absent.
    pub endpoint: Option<String>,
    /// `backend = "s3"`: the bucket's region.
    pub region: String,
    /// `backend = "s3"`: the key prefix the homes live under, inside the
    /// bucket ("" for the bucket's top).
    pub prefix: String,
    /// `backend = "s3"`: the access key; when absent, `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and the other `AWS_*` variables) are used.
    pub access_key_id: Option<String>,
    /// `backend = "s3"`: the secret that goes with `access_key_id`.
    pub secret_access_key: Option<String>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: StorageBackendKind::Local,
            root: PathBuf::from("./ferry-data/files"),
            bucket: None,
            endpoint: None,
            region: "us-east-1".to_owned(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// `storage.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackendKind {
    /// Files on the local disk under `storage.root`.
    Local,
    /// Objects in an S3-compatible bucket (docs/storage.md).
    S3,
}

/// `[accounts]`: where users come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsSection {
    /// `"sqlite:PATH"` (default `sqlite:./ferry-data/accounts.db`), `"postgres://..."`,
    /// or `"config"` (only the `[[users]]` and `[[groups]]` of this file).
    pub store: AccountStoreKind,
    /// Whether accounts of the host log in with the host's password, into their
    /// host home directory.
    pub system_users: bool,
    /// Where host accounts are listed (for containers and tests).
    pub system_passwd_file: PathBuf,
    /// Where host password hashes are.
    pub system_shadow_file: PathBuf,
    /// How host accounts' passwords are checked: the shadow file's hashes, or PAM.
    pub system_auth: SystemAuth,
    /// The PAM service (`/etc/pam.d/NAME`) with `system_auth = "pam"`.
    pub pam_service: String,
    /// Whether host accounts may sign in over SFTP with the keys of their own
    /// `~/.ssh/authorized_keys` (checked as OpenSSH's StrictModes does).
    pub system_authorized_keys: bool,
    /// How long a successful password check is remembered, so a returning user
    /// logs in without another argon2 run ("0s": never).
    pub login_cache: HumanDuration,
    /// How long one request to the account database may take, waiting for a
    /// connection included, before it counts as failed: a login is then
    /// refused with 421 and an upload that needs more of its quota stops
    /// with 451, rather than hanging while the database is away.
    pub timeout: HumanDuration,
    /// How long a server may go without saying it is alive before the
    /// reservations of its unfinished uploads are taken for abandoned (it
    /// crashed or was killed) and its users' quota usage is measured again
    /// from storage by a running server.
    pub recount_after: HumanDuration,
}

impl Default for AccountsSection {
    fn default() -> Self {
        AccountsSection {
            store: AccountStoreKind::Sql("sqlite:./ferry-data/accounts.db".into()),
            system_users: false,
            system_passwd_file: PathBuf::from("/etc/passwd"),
            system_shadow_file: PathBuf::from("/etc/shadow"),
            system_auth: SystemAuth::Shadow,
            pam_service: "ferry".to_owned(),
            system_authorized_keys: true,
            login_cache: HumanDuration(Duration::from_secs(900)),
            timeout: HumanDuration(Duration::from_secs(5)),
            recount_after: HumanDuration(Duration::from_secs(300)),
        }
    }
}

/// `accounts.store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStoreKind {
    /// Only the users and groups of the configuration file.
    Config,
    /// A database URL: `sqlite:PATH` or `postgres://USER:PASS@HOST/DB`. The
    /// configuration's users and groups are served too.
    Sql(String),
}

impl FromStr for AccountStoreKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "config" {
            Ok(AccountStoreKind::Config)
        } else if s.starts_with("sqlite:")
            || s.starts_with("postgres://")
            || s.starts_with("postgresql://")
        {
            Ok(AccountStoreKind::Sql(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not an account store: use \"sqlite:PATH\", \"postgres://...\" or \"config\""
            ))
        }
    }
}

impl std::fmt::Display for AccountStoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountStoreKind::Config => f.write_str("config"),
            AccountStoreKind::Sql(url) => f.write_str(url),
        }
    }
}

crate::string_serde!(AccountStoreKind);

/// `[anonymous]`: the `anonymous` and `ftp` logins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousSection {
    pub enabled: bool,
    pub home: String,
    /// Upload only: no delete, no rename, no overwrite, no append.
    pub writable: bool,
}

impl Default for AnonymousSection {
    fn default() -> Self {
        AnonymousSection {
            enabled: false,
            home: "/pub".into(),
            writable: false,
        }
    }
}

/// `[security]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    /// Failed logins from one address within `ban_window` that ban it.
    pub max_login_failures: u32,
    pub ban_window: HumanDuration,
    /// How long a ban lasts.
    pub ban_time: HumanDuration,
    pub allow_active_mode: bool,
    /// PORT/EPRT to an address other than the client's (FXP).
    pub allow_foreign_data_address: bool,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            max_login_failures: 5,
            ban_window: HumanDuration(Duration::from_secs(600)),
            ban_time: HumanDuration(Duration::from_secs(900)),
            allow_active_mode: true,
            allow_foreign_data_address: false,
        }
    }
}

/// `[tls]`: FTPS (RFC 4217).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain; with `private_key`. Without both, a self-signed pair
    /// is generated once in `./ferry-data/tls` and kept.
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    /// AUTH TLS on the control port: off, optional, required.
    pub explicit: ExplicitTls,
    /// Listeners where TLS starts with the first byte (implicit FTPS).
    pub implicit_listen: Vec<SocketAddr>,
    /// The oldest TLS version accepted: "1.2" or "1.3".
    pub min_version: TlsVersion,
    /// Data connections under PROT P must resume this control connection's session.
    pub require_session_reuse: bool,
    /// Client addresses exempt from `require_session_reuse`.
    pub session_reuse_exempt: Vec<Cidr>,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            certificate: None,
            private_key: None,
            explicit: ExplicitTls::Optional,
            implicit_listen: Vec::new(),
            min_version: TlsVersion::V1_2,
            require_session_reuse: true,
            session_reuse_exempt: Vec::new(),
        }
    }
}

/// `[sftp]`: SFTP over SSH (the SSH File Transfer Protocol, version 3), with
/// the same accounts, homes, permissions, limits and logs as FTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftpSection {
    /// SSH listeners; none (SFTP off) by default.
    pub listen: Vec<SocketAddr>,
    /// The SSH host key: an OpenSSH private key file, Ed25519 or ECDSA.
    /// Without one, an Ed25519 key is generated once in `./ferry-data/ssh`
    /// and kept.
    pub host_key: Option<PathBuf>,
    /// The ways users may sign in over SSH; all three by default.
    pub authentication: Vec<SshAuthMethod>,
    /// Files of certificate authorities' public keys, one per line as in
    /// OpenSSH's `TrustedUserCAKeys`: a key certified by one of them signs
    /// in the users its certificate names (by the `publickey` method). None
    /// by default.
    pub trusted_user_ca_keys: Vec<PathBuf>,
    /// OpenSSH's `RevokedKeys`: a file of revoked public keys, one per
    /// line, or a binary key revocation list (`ssh-keygen -k`; keys,
    /// certificate serial numbers and key ids). What it revokes signs
    /// nobody in, listed in `authorized_keys`, certified, or as a
    /// certificate authority. None by default.
    pub revoked_keys: Option<PathBuf>,
}

impl Default for SftpSection {
    fn default() -> Self {
        SftpSection {
            listen: Vec::new(),
            host_key: None,
            authentication: SshAuthMethod::ALL.to_vec(),
            trusted_user_ca_keys: Vec::new(),
            revoked_keys: None,
        }
    }
}

/// An SSH authentication method the server offers (`sftp.authentication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SshAuthMethod {
    /// RFC 4252 §7: one of the user's `authorized_keys`.
    #[serde(rename = "publickey")]
    PublicKey,
    /// RFC 4252 §8: the user's password.
    #[serde(rename = "password")]
    Password,
    /// RFC 4256: the user's password, asked as the answer to one prompt
    /// (what clients such as WinSCP and PuTTY try first, and what servers
    /// that check passwords through PAM offer).
    #[serde(rename = "keyboard-interactive")]
    KeyboardInteractive,
}

impl SshAuthMethod {
    /// Every method, in the order of the default.
    pub const ALL: [SshAuthMethod; 3] = [
        SshAuthMethod::PublicKey,
        SshAuthMethod::Password,
        SshAuthMethod::KeyboardInteractive,
    ];

    /// The method's name on the wire (RFC 4252 §5).
    pub fn as_str(self) -> &'static str {
        match self {
            SshAuthMethod::PublicKey => "publickey",
            SshAuthMethod::Password => "password",
            SshAuthMethod::KeyboardInteractive => "keyboard-interactive",
        }
    }
}

/// `accounts.system_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemAuth {
    /// The hash in `system_shadow_file`.
    Shadow,
    /// PAM's `pam_service`.
    Pam,
}

/// `tls.explicit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExplicitTls {
    /// AUTH is refused.
    Off,
    /// AUTH is offered; plain sessions work too.
    Optional,
    /// USER before AUTH and unprotected transfers are refused.
    Required,
}

/// `tls.min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

/// `[log]`: the activity logs. An empty path turns a log off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// One JSON object per command.
    pub audit: PathBuf,
    /// One wu-ftpd xferlog line per transfer.
    pub xferlog: PathBuf,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            audit: PathBuf::from("./ferry-data/audit.jsonl"),
            xferlog: PathBuf::from("./ferry-data/xferlog"),
        }
    }
}

/// One permission word of a `permissions` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    List,
    Download,
    Upload,
    Overwrite,
    Append,
    Delete,
    Rename,
    Mkdir,
    Rmdir,
    Chmod,
}

impl Permission {
    pub const ALL: [Permission; 10] = [
        Permission::List,
        Permission::Download,
        Permission::Upload,
        Permission::Overwrite,
        Permission::Append,
        Permission::Delete,
        Permission::Rename,
        Permission::Mkdir,
        Permission::Rmdir,
        Permission::Chmod,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Permission::List => "list",
            Permission::Download => "download",
            Permission::Upload => "upload",
            Permission::Overwrite => "overwrite",
            Permission::Append => "append",
            Permission::Delete => "delete",
            Permission::Rename => "rename",
            Permission::Mkdir => "mkdir",
            Permission::Rmdir => "rmdir",
            Permission::Chmod => "chmod",
        }
    }
}

/// A word of a rule: one permission, or `*` for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionWord {
    One(Permission),
    All,
}

impl FromStr for PermissionWord {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(PermissionWord::All);
        }
        Permission::ALL
            .into_iter()
            .find(|p| p.word() == s)
            .map(PermissionWord::One)
            .ok_or_else(|| {
                format!(
                    "unknown permission `{s}`; use list, download, upload, overwrite, append, delete, rename, mkdir, rmdir, chmod or *"
                )
            })
    }
}

impl std::fmt::Display for PermissionWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PermissionWord::All => f.write_str("*"),
            PermissionWord::One(p) => f.write_str(p.word()),
        }
    }
}

/// A stored password: a hash in PHC or crypt form. A plain-text password is refused
/// when the configuration is read.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// The schemes ferry can verify: argon2 (PHC), bcrypt, sha512-crypt,
    /// sha256-crypt and yescrypt (imported from other servers, or a host's
    /// shadow file).
    pub const SCHEMES: [&'static str; 9] = [
        "$argon2id$",
        "$argon2i$",
        "$argon2d$",
        "$2a$",
        "$2b$",
        "$2y$",
        "$6$",
        "$5$",
        "$y$",
    ];

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PasswordHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if Self::SCHEMES.iter().any(|p| s.starts_with(p)) && s.split('$').count() >= 4 {
            Ok(PasswordHash(s.to_owned()))
        } else {
            Err("not a password hash: plain-text passwords are refused; make a hash with `ferry hash-password` (argon2id), or import a bcrypt, sha512-crypt or yescrypt hash".into())
        }
    }
}

/// Serde through `FromStr` and `Display`: the value is a TOML string.
#[macro_export]
#[doc(hidden)]
macro_rules! string_serde {
    ($($t:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <String as serde::Deserialize>::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

string_serde!(PermissionWord, PasswordHash);

/// Per-path rules: FTP path (relative to the home) to permission words.
pub type PermissionTable = BTreeMap<String, Vec<PermissionWord>>;

/// Declares the settings of a user or group once, and from that list both
/// [`AccountEntry`] (a `[[users]]`/`[[groups]]` table, whose name keeps its line
/// for error messages) and [`AccountSettings`] (the same settings without the
/// name, as account stores keep them).
macro_rules! account_settings {
    ($($(#[doc = $doc:literal])* $field:ident : $ty:ty,)*) => {
        /// One `[[users]]` or `[[groups]]` table.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct AccountEntry {
            pub name: Spanned<String>,
            $($(#[doc = $doc])* #[serde(default)] pub $field: $ty,)*
        }

        /// The settings of a user or group, without its name.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct AccountSettings {
            $($(#[doc = $doc])* #[serde(default, skip_serializing_if = "is_unset")] pub $field: $ty,)*
        }

        impl AccountEntry {
            /// The settings part.
            pub fn settings(&self) -> AccountSettings {
                AccountSettings { $($field: self.$field.clone(),)* }
            }
        }

        impl AccountSettings {
            /// The names of every setting, for help texts.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field),)*];

            /// The names of the settings that are set.
            pub fn set_keys(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(if !is_unset(&self.$field) { keys.push(stringify!($field)); })*
                keys
            }
        }
    };
}

/// Whether a setting is at its default (absent), for serialization.
fn is_unset<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

account_settings! {
    /// Users only: the password hash.
    password_hash: Option<PasswordHash>,
    /// Users only: the home, relative to `storage.root`; `/NAME` when absent.
    home: Option<String>,
    /// Users only: the groups, in order of precedence.
    groups: Vec<String>,
    /// Users only: SSH public keys the user may sign in with over SFTP
    /// (OpenSSH `.pub` lines).
    authorized_keys: Vec<AuthorizedKey>,
    /// Users only: the principals an OpenSSH certificate from a trusted
    /// authority (`sftp.trusted_user_ca_keys`) must name one of to sign this
    /// user in, instead of the user's name (sshd's
    /// `AuthorizedPrincipalsFile`).
    ssh_principals: Vec<crate::Principal>,
    permissions: PermissionTable,
    quota_bytes: Option<ByteSize>,
    quota_files: Option<u64>,
    max_sessions: Option<u32>,
    download_rate: Option<ByteRate>,
    upload_rate: Option<ByteRate>,
    allow_from: Option<Vec<Cidr>>,
    deny_from: Option<Vec<Cidr>>,
    login_hours: Option<Vec<LoginHours>>,
    allowed_files: Option<Vec<FilePattern>>,
    denied_files: Option<Vec<FilePattern>>,
    max_file_size: Option<ByteSize>,
}

/// `[[users]]`.
pub type UserEntry = AccountEntry;
/// `[[groups]]`.
pub type GroupEntry = AccountEntry;

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            line: None,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Config::parse(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, &e, None))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = (key != ".").then_some(key);
            toml_error(text, e.inner(), key)
        })?;
        config.check(text)?;
        Ok(config)
    }

    /// Checks what the schema alone cannot: names unique and known, paths absolute.
    fn check(&self, text: &str) -> Result<(), ConfigError> {
        let line = |s: &Spanned<String>| Some(line_of(text, s.span().start));
        if self.server.listen.is_empty() {
            return Err(
                ConfigError::new("at least one listen address is needed").at_key("server.listen")
            );
        }
        if self.accounts.pam_service.is_empty()
            || !self
                .accounts
                .pam_service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError::new(
                "must be a PAM service name (a file name in /etc/pam.d), like \"ferry\"",
            )
            .at_key("accounts.pam_service"));
        }
        if self.storage.backend == StorageBackendKind::S3 {
            match &self.storage.bucket {
                None => {
                    return Err(ConfigError::new(
                        "backend = \"s3\" needs the bucket's name, for example bucket = \"ferry\"",
                    )
                    .at_key("storage.bucket"));
                }
                Some(b) if b.is_empty() || b.contains('/') => {
                    return Err(ConfigError::new("must be a bucket name, without `/`")
                        .at_key("storage.bucket"));
                }
                Some(_) => {}
            }
            if let Some(e) = &self.storage.endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return Err(ConfigError::new(
                    "must be an http:// or https:// address, for example \"http://127.0.0.1:9000\"",
                )
                .at_key("storage.endpoint"));
            }
            if self.storage.access_key_id.is_some() != self.storage.secret_access_key.is_some() {
                return Err(ConfigError::new(
                    "access_key_id and secret_access_key go together: set both, or neither (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are used)",
                )
                .at_key("storage.secret_access_key"));
            }
        }
        if self.sftp.authentication.is_empty() {
            return Err(ConfigError::new(
                "at least one method is needed: \"publickey\", \"password\" or \"keyboard-interactive\"",
            )
            .at_key("sftp.authentication"));
        }
        if self.accounts.timeout.0.is_zero() {
            return Err(ConfigError::new("must be more than 0s, for example \"5s\"")
                .at_key("accounts.timeout"));
        }
        if self.accounts.recount_after.0 < Duration::from_secs(1) {
            return Err(ConfigError::new("must be at least 1s, for example \"5m\"")
                .at_key("accounts.recount_after"));
        }
        if self.anonymous.enabled && !self.anonymous.home.starts_with('/') {
            return Err(
                ConfigError::new("must be an absolute FTP path like \"/pub\"")
                    .at_key("anonymous.home"),
            );
        }
        let mut groups = std::collections::HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            if !groups.insert(g.name.get_ref().as_str()) {
                return Err(ConfigError::new(format!(
                    "group `{}` is defined twice",
                    g.name.get_ref()
                ))
                .at_key(format!("groups[{i}].name"))
                .at_line(line(&g.name)));
            }
            for (key, set) in [
                ("authorized_keys", !g.authorized_keys.is_empty()),
                ("ssh_principals", !g.ssh_principals.is_empty()),
            ] {
                if set {
                    return Err(
                        ConfigError::new(format!("only users have {key}, not groups"))
                            .at_key(format!("groups[{i}].{key}"))
                            .at_line(line(&g.name)),
                    );
                }
            }
            check_rule_paths(&g.permissions).map_err(|m| {
                ConfigError::new(m)
                    .at_key(format!("groups[{i}].permissions"))
                    .at_line(line(&g.name))
            })?;
        }
        let mut users = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let name = u.name.get_ref();
            let at = |m: String, k: &str| {
                ConfigError::new(m)
                    .at_key(format!("users[{i}].{k}"))
                    .at_line(line(&u.name))
            };
            if name.is_empty() || name.contains(|c: char| c.is_control() || c.is_whitespace()) {
                return Err(at(format!("`{name}` is not a valid user name"), "name"));
            }
            if name == "anonymous" || name == "ftp" {
                return Err(at(
                    format!("`{name}` is reserved for anonymous access ([anonymous])"),
                    "name",
                ));
            }
            if !users.insert(name.as_str()) {
                return Err(at(format!("user `{name}` is defined twice"), "name"));
            }
            if u.password_hash.is_none() && u.authorized_keys.is_empty() {
                return Err(at(
                    "missing: every user needs a hash from `ferry hash-password`, or authorized_keys to sign in over SFTP".into(),
                    "password_hash",
                ));
            }
            if let Some(home) = &u.home
                && !home.starts_with('/')
            {
                return Err(at(
                    format!("`{home}` must be an absolute FTP path like \"/{name}\""),
                    "home",
                ));
            }
            for g in &u.groups {
                if !groups.contains(g.as_str()) {
                    return Err(at(
                        format!("group `{g}` is not defined in [[groups]]"),
                        "groups",
                    ));
                }
            }
            check_rule_paths(&u.permissions).map_err(|m| at(m, "permissions"))?;
        }
        Ok(())
    }
}

fn check_rule_paths(rules: &BTreeMap<String, Vec<PermissionWord>>) -> Result<(), String> {
    for path in rules.keys() {
        if !path.starts_with('/') {
            return Err(format!(
                "rule path `{path}` must be absolute, like \"/{path}\""
            ));
        }
    }
    Ok(())
}

fn toml_error(text: &str, e: &toml::de::Error, key: Option<String>) -> ConfigError {
    ConfigError {
        file: None,
        line: e.span().map(|s| line_of(text, s.start)),
        key,
        message: e.message().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    #[test]
    fn empty_text_is_the_defaults() {
        let c = Config::parse("").expect("defaults");
        assert_eq!(
            c.server.listen,
            vec![SocketAddr::from(([127, 0, 0, 1], 2121))]
        );
        assert!(!c.anonymous.enabled);
        assert_eq!(c.server.idle_timeout.0, Duration::from_secs(300));
        assert_eq!(c.server.loopback_congestion_control.name(), Some("cubic"));
    }

    #[test]
    fn loopback_congestion_control() {
        let c =
            Config::parse("[server]\nloopback_congestion_control = \"system\"\n").expect("valid");
        assert_eq!(c.server.loopback_congestion_control.name(), None);
        let c = Config::parse("[server]\nloopback_congestion_control = \"reno\"\n").expect("valid");
        assert_eq!(c.server.loopback_congestion_control.name(), Some("reno"));
        let e = err("[server]\n\nloopback_congestion_control = \"no such\"\n");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("server.loopback_congestion_control"));
        assert!(e.message.contains("congestion-control name"), "{e}");
        let e = err("[server]\nloopback_congestion_control = 3\n");
        assert_eq!(e.key.as_deref(), Some("server.loopback_congestion_control"));
    }

    #[test]
    fn full_example() {
        let text = format!(
            r#"
[server]
listen = ["127.0.0.1:2121", "[::1]:2121"]
passive_ports = "50000-50100"
idle_timeout = "5m"

[[groups]]
name = "staff"
permissions = {{ "/" = ["list", "download"] }}

[[users]]
name = "alice"
password_hash = "{HASH}"
home = "/alice"
groups = ["staff"]
permissions = {{ "/" = ["*"], "/archive" = ["list", "download"] }}
"#
        );
        let c = Config::parse(&text).expect("valid");
        assert_eq!(c.users[0].name.get_ref(), "alice");
        assert_eq!(
            c.server.passive_ports,
            Some(PortRange {
                first: 50000,
                last: 50100
            })
        );
        assert_eq!(c.users[0].permissions["/"], vec![PermissionWord::All]);
    }

    fn err(text: &str) -> ConfigError {
        Config::parse(text).expect_err("must be refused")
    }

    #[test]
    fn the_account_store_timeout_is_bounded_and_never_zero() {
        assert_eq!(
            Config::parse("").expect("empty").accounts.timeout.0,
            Duration::from_secs(5)
        );
        let c = Config::parse("[accounts]\ntimeout = \"2s\"\n").expect("2s");
        assert_eq!(c.accounts.timeout.0, Duration::from_secs(2));
        let e = err("[accounts]\ntimeout = \"0s\"\n");
        assert_eq!(e.key.as_deref(), Some("accounts.timeout"));
        assert!(e.message.contains("more than 0s"), "{e}");
        let c = Config::parse("").expect("empty");
        assert_eq!(c.accounts.recount_after.0, Duration::from_secs(300));
        let e = err("[accounts]\nrecount_after = \"0s\"\n");
        assert_eq!(e.key.as_deref(), Some("accounts.recount_after"));
    }

    #[test]
    fn system_accounts_check_the_shadow_file_or_pam() {
        let c = Config::parse("").expect("empty");
        assert_eq!(c.accounts.system_auth, SystemAuth::Shadow);
        assert_eq!(c.accounts.pam_service, "ferry");
        let c = Config::parse("[accounts]\nsystem_auth = \"pam\"\npam_service = \"vsftpd\"\n")
            .expect("pam");
        assert_eq!(c.accounts.system_auth, SystemAuth::Pam);
        let e = err("[accounts]\npam_service = \"../../etc/passwd\"\n");
        assert_eq!(e.key.as_deref(), Some("accounts.pam_service"));
        let e = err("[accounts]\nsystem_auth = \"ldap\"\n");
        assert_eq!(e.key.as_deref(), Some("accounts.system_auth"));
    }

    #[test]
    fn ssh_sign_in_methods_default_to_all_three_and_cannot_be_none() {
        let c = Config::parse("").expect("empty");
        assert_eq!(c.sftp.authentication, SshAuthMethod::ALL.to_vec());
        let c = Config::parse("[sftp]\nauthentication = [\"publickey\"]\n").expect("keys only");
        assert_eq!(c.sftp.authentication, vec![SshAuthMethod::PublicKey]);
        let c =
            Config::parse("[sftp]\nauthentication = [\"keyboard-interactive\", \"publickey\"]\n")
                .expect("two");
        assert_eq!(
            c.sftp.authentication,
            vec![SshAuthMethod::KeyboardInteractive, SshAuthMethod::PublicKey]
        );
        let e = err("[sftp]\nauthentication = []\n");
        assert_eq!(e.key.as_deref(), Some("sftp.authentication"));
        assert!(e.message.contains("at least one method"), "{e}");
        let e = err("[sftp]\nauthentication = [\"hostbased\"]\n");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("keyboard-interactive"), "{e}");
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = err("[server]\nidle_timeout = \"5 minutes\"\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("server.idle_timeout"));
        assert!(e.message.contains("not a duration"), "{e}");

        let e = err("[server]\nbanner = \"x\"\nlisten_on = []\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("unknown field"), "{e}");

        let e = err("\n\n[[users]]\nname = \"bob\"\npassword_hash = \"hunter2\"\n");
        assert_eq!(e.line, Some(5));
        assert_eq!(e.key.as_deref(), Some("users[0].password_hash"));
        assert!(e.message.contains("plain-text"), "{e}");
        assert!(!e.to_string().contains("hunter2"));

        let e = err(&format!(
            "[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\n"
        ));
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("twice"));

        let e = err(&format!(
            "[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\ngroups = [\"nope\"]\n"
        ));
        assert!(e.message.contains("not defined"), "{e}");

        let e = err(&format!(
            "[[users]]\nname = \"a\"\npassword_hash = \"{HASH}\"\npermissions = {{ \"/\" = [\"fly\"] }}\n"
        ));
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("unknown permission `fly`"), "{e}");

        let e = err("[storage]\nbackend = \"tape\"\n");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn users_may_sign_in_with_keys_alone() {
        let key = crate::authorized_key::tests::ED25519;
        let c = Config::parse(&format!(
            "[[users]]\nname = \"k\"\nauthorized_keys = [\"{key}\"]\n"
        ))
        .expect("keys only");
        assert_eq!(c.users[0].authorized_keys[0].comment(), "alice@laptop");
        assert!(c.users[0].password_hash.is_none());

        // Neither a password nor a key: nobody could sign in.
        let e = err("[[users]]\nname = \"k\"\nhome = \"/k\"\n");
        assert_eq!(e.key.as_deref(), Some("users[0].password_hash"));
        assert!(e.message.contains("authorized_keys"), "{e}");

        // A key ferry cannot verify names its line and says why.
        let dsa = key.replace("ssh-ed25519", "ssh-dss");
        let e = err(&format!(
            "[[users]]\nname = \"k\"\npassword_hash = \"{HASH}\"\nauthorized_keys = [\"{dsa}\"]\n"
        ));
        assert_eq!(e.line, Some(4));
        assert!(
            e.key
                .as_deref()
                .is_some_and(|k| k.starts_with("users[0].authorized_keys")),
            "{e}"
        );
        assert!(e.message.contains("DSA keys are not accepted"), "{e}");

        let e = err(&format!(
            "[[groups]]\nname = \"g\"\nauthorized_keys = [\"{key}\"]\n"
        ));
        assert_eq!(e.key.as_deref(), Some("groups[0].authorized_keys"));

        // Certificate principals: users only, one name per item.
        let e = err("[[groups]]\nname = \"g\"\nssh_principals = [\"ops\"]\n");
        assert_eq!(e.key.as_deref(), Some("groups[0].ssh_principals"));
        let user = |principals: &str| {
            format!(
                "[[users]]\nname = \"k\"\npassword_hash = \"{HASH}\"\nssh_principals = [{principals}]\n"
            )
        };
        for bad in ["\"ops,dev\"", "\"ops dev\"", "\"\"", "\"ops\\tdev\""] {
            let e = err(&user(bad));
            assert_eq!(
                e.key.as_deref(),
                Some("users[0].ssh_principals[0]"),
                "{bad}"
            );
            assert!(e.message.contains("principal"), "{bad}: {}", e.message);
        }
        let c = Config::parse(&user("\"ops\", \"k\"")).expect("principals");
        assert_eq!(c.users[0].ssh_principals, ["ops", "k"]);
    }

    #[test]
    fn an_s3_backend_needs_a_bucket_and_whole_credentials() {
        let c = Config::parse(
            "[storage]\nbackend = \"s3\"\nbucket = \"files\"\nendpoint = \"http://127.0.0.1:9000\"\nprefix = \"ftp\"\n",
        )
        .expect("valid");
        assert_eq!(c.storage.backend, StorageBackendKind::S3);
        assert_eq!(c.storage.bucket.as_deref(), Some("files"));
        assert_eq!(c.storage.region, "us-east-1");
        let e = err("[storage]\nbackend = \"s3\"\n");
        assert_eq!(e.key.as_deref(), Some("storage.bucket"));
        let e = err("[storage]\nbackend = \"s3\"\nbucket = \"a/b\"\n");
        assert_eq!(e.key.as_deref(), Some("storage.bucket"));
        let e = err("[storage]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"127.0.0.1:9000\"\n");
        assert_eq!(e.key.as_deref(), Some("storage.endpoint"));
        let e = err("[storage]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id = \"k\"\n");
        assert_eq!(e.key.as_deref(), Some("storage.secret_access_key"));
        // The local backend ignores the S3 keys' absence.
        assert!(Config::parse("[storage]\nroot = \"/srv/ftp\"\n").is_ok());
    }
}

/// Settings holding lists; on the command line their items are separated by commas
/// (by semicolons for `login_hours` and `authorized_keys`, whose items may hold
/// commas).
const LIST_KEYS: &[&str] = &[
    "groups",
    "allow_from",
    "deny_from",
    "login_hours",
    "allowed_files",
    "denied_files",
    "authorized_keys",
    "ssh_principals",
];

/// Settings only users have.
pub const USER_ONLY_KEYS: &[&str] = &[
    "password_hash",
    "home",
    "groups",
    "authorized_keys",
    "ssh_principals",
];

impl AccountSettings {
    /// Applies one `KEY=VALUE` from the command line, with the same keys and value
    /// forms as the configuration file: `quota_bytes=1 GiB`, `max_sessions=4`,
    /// `allow_from=10.0.0.0/8,192.0.2.1`, `permissions./archive=list,download`.
    /// An empty value removes the setting (or the rule).
    pub fn apply(&mut self, assignment: &str) -> Result<(), String> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| format!("`{assignment}` is not KEY=VALUE"))?;
        let (key, value) = (key.trim(), value.trim());
        let mut json = serde_json::to_value(&*self).map_err(|e| e.to_string())?;
        let map = json.as_object_mut().ok_or("settings are not a table")?;
        if let Some(path) = key.strip_prefix("permissions.") {
            if !path.starts_with('/') {
                return Err(format!(
                    "rule path `{path}` must be absolute, like permissions./{path}"
                ));
            }
            let rules = map
                .entry("permissions")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            let rules = rules.as_object_mut().ok_or("permissions are not a table")?;
            if value.is_empty() {
                rules.remove(path);
            } else {
                let words = parse_list(value, ',');
                rules.insert(
                    path.to_owned(),
                    serde_json::to_value(words).map_err(|e| e.to_string())?,
                );
            }
        } else {
            if !Self::KEYS.contains(&key) || key == "permissions" {
                return Err(format!(
                    "unknown setting `{key}`; settings are {} and permissions./PATH",
                    Self::KEYS
                        .iter()
                        .filter(|k| **k != "permissions")
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if value.is_empty() {
                map.remove(key);
            } else {
                let parsed = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
                    Ok(mut t) => t
                        .remove("v")
                        .unwrap_or(toml::Value::String(value.to_owned())),
                    Err(_) => toml::Value::String(value.to_owned()),
                };
                let parsed = match (LIST_KEYS.contains(&key), parsed) {
                    (true, toml::Value::String(s)) => {
                        // Key comments and login hours may hold commas.
                        let sep = match key {
                            "login_hours" | "authorized_keys" => ';',
                            _ => ',',
                        };
                        toml::Value::Array(
                            parse_list(&s, sep)
                                .into_iter()
                                .map(toml::Value::String)
                                .collect(),
                        )
                    }
                    (_, v) => v,
                };
                map.insert(
                    key.to_owned(),
                    serde_json::to_value(parsed).map_err(|e| e.to_string())?,
                );
            }
        }
        *self = serde_json::from_value(json).map_err(|e| format!("{key}: {e}"))?;
        Ok(())
    }
}

fn parse_list(value: &str, sep: char) -> Vec<String> {
    value
        .split(sep)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod apply_tests {
    use super::*;

    #[test]
    fn command_line_settings() {
        let mut s = AccountSettings::default();
        for a in [
            "quota_bytes=1 GiB",
            "quota_files=10000",
            "max_sessions=4",
            "upload_rate=\"2 MiB/s\"",
            "allow_from=127.0.0.0/8, ::1/128",
            "login_hours=Mon-Fri 08:00-18:00; Sat,Sun 10:00-12:00",
            "permissions./=*",
            "permissions./archive=list,download",
            "denied_files=*.exe",
        ] {
            s.apply(a).unwrap_or_else(|e| panic!("{a}: {e}"));
        }
        assert_eq!(s.quota_bytes, Some(ByteSize(1 << 30)));
        assert_eq!(s.quota_files, Some(10000));
        assert_eq!(s.upload_rate, Some(ByteRate(2 << 20)));
        assert_eq!(s.allow_from.as_ref().map(Vec::len), Some(2));
        assert_eq!(s.login_hours.as_ref().map(Vec::len), Some(2));
        assert_eq!(s.permissions["/archive"].len(), 2);
        s.apply("permissions./archive=").expect("remove rule");
        s.apply("max_sessions=").expect("unset");
        assert!(!s.permissions.contains_key("/archive") && s.max_sessions.is_none());
        for bad in [
            "quota_bytes=lots",
            "max_sessions=-1",
            "colour=blue",
            "permissions=x",
            "permissions.rel=list",
            "allow_from=nowhere",
            "novalue",
        ] {
            assert!(s.apply(bad).is_err(), "{bad} accepted");
        }
        // A failed assignment changes nothing.
        assert_eq!(s.quota_bytes, Some(ByteSize(1 << 30)));

        // Principals are checked as in ferry.toml: a name with a blank
        // inside is refused, and a refused list changes nothing.
        s.apply("ssh_principals=ops, dev").expect("principals");
        assert_eq!(s.ssh_principals, ["ops", "dev"]);
        for bad in ["ssh_principals=ops dev", "ssh_principals=[\"a,b\"]"] {
            let e = s.apply(bad).expect_err(bad);
            assert!(e.contains("not a principal"), "{bad}: {e}");
        }
        assert_eq!(s.ssh_principals, ["ops", "dev"]);

        // Keys are separated by semicolons: a key's comment may hold commas.
        let key = crate::authorized_key::tests::ED25519;
        let bare = key.trim_end_matches(" alice@laptop");
        s.apply(&format!("authorized_keys={key}; {bare} work, 2026"))
            .expect("keys");
        assert_eq!(s.authorized_keys.len(), 2);
        assert_eq!(s.authorized_keys[1].comment(), "work, 2026");
        assert!(s.apply("authorized_keys=ssh-ed25519 AAAA").is_err());
        assert_eq!(s.authorized_keys.len(), 2, "a refused key changes nothing");
        s.apply("authorized_keys=").expect("unset");
        assert!(s.authorized_keys.is_empty());
    }
}
