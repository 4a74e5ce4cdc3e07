//! The FTP wire format, with no I/O.
//!
//! Everything here turns bytes from a peer into typed values, or typed values into
//! bytes for a peer: control-connection commands ([`command`]), replies ([`reply`]),
//! the host-port arguments of PORT/PASV/EPRT/EPSV ([`host_port`]), directory listing
//! lines ([`listing`]), the TYPE A line-ending conversion ([`ascii`]) and the Telnet
//! control sequences clients put in front of ABOR ([`telnet`]).
//!
//! Nothing in this crate opens a socket or a file, so all of it is tested in memory.

pub mod ascii;
pub mod command;
pub mod host_port;
pub mod listing;
pub mod reply;
pub mod telnet;
pub mod timeval;

pub use command::{Command, ParseError, Password, PathArg};
pub use reply::{Reply, ReplyParser};
