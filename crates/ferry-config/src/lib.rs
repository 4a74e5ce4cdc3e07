//! The configuration file (`ferry.toml`): its schema, its units, and errors that
//! name the key and the line.
//!
//! Every section refuses keys it does not know, so a typo is an error at start, not
//! a silently ignored setting. [`Config::load`] and [`Config::parse`] are the entry
//! points; [`Config::default`] is what `ferry serve` runs with no file at all.

pub mod error;
pub mod schema;
pub mod units;

pub use error::ConfigError;
pub use schema::*;
pub use units::{ByteSize, HumanDuration, PortRange};
