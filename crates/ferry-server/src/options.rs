//! The settings a running server works with, built from the configuration.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_accounts::{Authenticator, MemoryLedger, UsageLedger};
use ferry_config::PortRange;
use ferry_storage::StorageBackend;

use crate::transfer::BlockingSlots;

/// Where "now" comes from; replaceable in tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Seconds since the Unix epoch, as the account database keeps times.
pub fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Everything a session needs to know about the server it belongs to.
#[derive(Clone)]
pub struct ServerOptions {
    pub listen: Vec<SocketAddr>,
    pub banner: String,
    pub passive_ports: Option<PortRange>,
    pub public_address: Option<IpAddr>,
    pub idle_timeout: Duration,
    pub data_timeout: Duration,
    pub login_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub shutdown_grace: Duration,
    /// Plain binary downloads of host files use sendfile(2), uploads splice(2).
    pub sendfile: bool,
    /// The congestion control of data connections over loopback.
    pub loopback_congestion: crate::congestion::LoopbackCongestion,
    /// The places for transfers that run as a blocking loop.
    pub blocking_slots: Arc<BlockingSlots>,
    /// LIST, NLST and STAT list directories of at most this many entries in
    /// name order (`ferry_storage::in_name_order`); 0 never sorts.
    pub listing_sort_limit: usize,
    pub allow_active_mode: bool,
    pub allow_foreign_data_address: bool,
    pub storage: Arc<dyn StorageBackend>,
    /// Host accounts' homes are host directories: this backend is rooted at `/`.
    /// `None` when system users are off.
    pub host_storage: Option<Arc<dyn StorageBackend>>,
    pub accounts: Authenticator,
    /// Quota usage; in memory unless an account database keeps it.
    pub ledger: Arc<dyn UsageLedger>,
    /// Per-user state shared by that user's sessions.
    pub users: Arc<crate::users::UserRegistry>,
    /// The audit log and the xferlog.
    pub activity: Arc<crate::activity::ActivityLog>,
    /// Failed logins and bans.
    pub bans: Arc<crate::bans::BanList>,
    /// FTPS: the certificate and settings, when TLS is offered.
    pub tls: Option<Arc<crate::tls::TlsContext>>,
    pub explicit_tls: ferry_config::ExplicitTls,
    pub implicit_listen: Vec<SocketAddr>,
    /// SFTP's listeners (`[sftp] listen`).
    pub sftp_listen: Vec<SocketAddr>,
    /// SFTP: the host key and SSH settings, when SFTP is on.
    pub sftp: Option<Arc<crate::sftp::SftpContext>>,
    pub require_session_reuse: bool,
    pub session_reuse_exempt: Vec<ferry_config::Cidr>,
    pub clock: Clock,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("listen", &self.listen)
            .field("passive_ports", &self.passive_ports)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl ServerOptions {
    /// Settings from a checked configuration, with the given storage and accounts.
    pub fn from_config(
        config: &ferry_config::Config,
        storage: Arc<dyn StorageBackend>,
        accounts: Authenticator,
    ) -> Self {
        let s = &config.server;
        ServerOptions {
            listen: s.listen.clone(),
            banner: s.banner.clone(),
            passive_ports: s.passive_ports,
            public_address: s.public_address,
            idle_timeout: s.idle_timeout.0,
            data_timeout: s.data_timeout.0,
            login_timeout: s.login_timeout.0,
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            shutdown_grace: s.shutdown_grace.0,
            sendfile: s.sendfile,
            loopback_congestion: crate::congestion::LoopbackCongestion::probe(
                &s.loopback_congestion_control,
            ),
            blocking_slots: BlockingSlots::new(s.max_blocking_transfers),
            listing_sort_limit: s.listing_sort_limit,
            allow_active_mode: config.security.allow_active_mode,
            allow_foreign_data_address: config.security.allow_foreign_data_address,
            storage,
            host_storage: None,
            accounts,
            ledger: Arc::new(MemoryLedger::default()),
            users: Arc::default(),
            activity: Arc::default(),
            bans: Arc::new(crate::bans::BanList::new(
                &config.security,
                None,
                Arc::new(SystemTime::now),
            )),
            tls: None,
            explicit_tls: config.tls.explicit,
            implicit_listen: config.tls.implicit_listen.clone(),
            sftp_listen: config.sftp.listen.clone(),
            sftp: None,
            require_session_reuse: config.tls.require_session_reuse,
            session_reuse_exempt: config.tls.session_reuse_exempt.clone(),
            clock: Arc::new(SystemTime::now),
        }
    }
}
