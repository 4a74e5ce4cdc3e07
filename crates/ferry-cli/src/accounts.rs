//! Opening the account stores a configuration names, for `serve`, `check-config`
//! and the `user`/`group` commands alike.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ferry_accounts::SystemStore;
use ferry_accounts::{
    AccountStore, Authenticator, ConfigStore, MemoryLedger, SqlStore, UsageLedger,
};
use ferry_config::{AccountStoreKind, Config};

/// The stores of a configuration, ready to use.
pub struct Accounts {
    pub authenticator: Authenticator,
    pub ledger: Arc<dyn UsageLedger>,
    /// The writable store, when `accounts.store` names a database.
    pub sql: Option<Arc<SqlStore>>,
    pub config_store: Arc<ConfigStore>,
}

impl Accounts {
    /// Opens the stores. A user or group defined both in the configuration file and
    /// in the database is an error.
    pub async fn open(config: &Config, path: Option<&Path>) -> anyhow::Result<Accounts> {
        let config_store = Arc::new(ConfigStore::from_config(config).map_err(|mut e| {
            e.file = path.map(Path::to_owned);
            e
        })?);
        let mut stores: Vec<Arc<dyn AccountStore>> = vec![config_store.clone()];
        let (sql, ledger): (Option<Arc<SqlStore>>, Arc<dyn UsageLedger>) = match &config
            .accounts
            .store
        {
            AccountStoreKind::Config => (None, Arc::new(MemoryLedger::default())),
            AccountStoreKind::Sql(url) => {
                let store = Arc::new(
                    SqlStore::open(url, config.accounts.timeout.0)
                        .await
                        .context("accounts.store")?,
                );
                let file = path.map_or_else(
                    || "the configuration".to_owned(),
                    |p| p.display().to_string(),
                );
                for name in config_store.user_names().await? {
                    if store.user(&name).await?.is_some() {
                        anyhow::bail!(
                            "user `{name}` is defined both in {file} and in {}: remove one of them",
                            store.describe()
                        );
                    }
                }
                for name in config_store.group_names().await? {
                    if store.group(&name).await?.is_some() {
                        anyhow::bail!(
                            "group `{name}` is defined both in {file} and in {}: remove one of them",
                            store.describe()
                        );
                    }
                }
                stores.push(store.clone());
                (Some(store.clone()), store)
            }
        };
        if config.accounts.system_users {
            stores.push(Arc::new(
                SystemStore::new(
                    config.accounts.system_passwd_file.clone(),
                    config.accounts.system_shadow_file.clone(),
                    match config.accounts.system_auth {
                        ferry_config::SystemAuth::Shadow => ferry_accounts::SystemAuth::Shadow,
                        ferry_config::SystemAuth::Pam => {
                            ferry_accounts::SystemAuth::Pam(config.accounts.pam_service.clone())
                        }
                    },
                )
                .reading_authorized_keys(config.accounts.system_authorized_keys),
            ));
        }
        let authenticator = Authenticator::new(stores, &config.anonymous)?
            .with_login_cache(config.accounts.login_cache.0);
        Ok(Accounts {
            authenticator,
            ledger,
            sql,
            config_store,
        })
    }

    /// The writable store, or an error that says how to get one.
    pub fn writable(&self) -> anyhow::Result<&SqlStore> {
        self.sql.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "accounts.store is \"config\": users are edited in the configuration file; set accounts.store to \"sqlite:PATH\" or \"postgres://...\" to manage them with ferry user"
            )
        })
    }

    /// How many users can log in (without anonymous).
    pub async fn user_count(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for store in self.authenticator.stores() {
            n += store.user_names().await?.len();
        }
        Ok(n)
    }
}
