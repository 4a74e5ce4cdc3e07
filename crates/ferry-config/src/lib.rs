//! The configuration file (`ferry.toml`): its schema, its units, and errors that
//! name the key and the line.
//!
//! Every section refuses keys it does not know, so a typo is an error at start, not
//! a silently ignored setting. [`Config::load`] and [`Config::parse`] are the entry
//! points; [`Config::default`] is what `ferry serve` runs with no file at all.

pub mod authorized_key;
pub mod error;
pub mod key_options;
pub mod limits;
pub mod schema;
pub mod units;

pub use authorized_key::AuthorizedKey;
pub use error::ConfigError;
pub use key_options::{AddressPatterns, KeyOptions, Principal};
pub use limits::{ByteRate, Cidr, FilePattern, LoginHours};
pub use schema::*;
pub use units::{ByteSize, CongestionControl, HumanDuration, PortRange};

/// `YYYY-MM-DD HH:MM` in UTC, for tests.
#[cfg(test)]
pub(crate) fn timeval_for_tests(s: &str) -> time::OffsetDateTime {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::PrimitiveDateTime::parse(s, &f)
        .expect("test time")
        .assume_utc()
}
