//! The FTP server: listeners, sessions, data channels.
//!
//! - [`Server`] binds the listeners and runs until shut down ([`Server::run`]).
//! - [`listener`] accepts connections and applies the connection caps.
//! - [`control`] reads command lines and writes replies on a control connection.
//! - [`session`] is the per-connection state machine; each command family lives in
//!   its own file there, headed by the RFC section it implements.
//! - [`data`] sets up and opens data connections ([`passive::PassivePortPool`] for
//!   PASV/EPSV), and [`transfer`] moves bytes over them.
//! - [`error`] is the one place where failures become reply codes.
//! - [`signin`] signs users in for every protocol; [`sftp`] serves SFTP over
//!   SSH with the same accounts, storage and policy.

pub mod activity;
pub mod allocator;
pub mod bans;
pub mod congestion;
pub mod control;
pub mod data;
pub mod error;
pub mod limits;
pub mod listener;
pub mod options;
pub mod passive;
pub mod recount;
pub mod session;
pub mod sftp;
pub mod signin;
#[cfg(test)]
mod test_support;
pub mod tls;
pub mod transfer;
pub mod urgent;
pub mod users;

pub use listener::Server;
pub use options::ServerOptions;
