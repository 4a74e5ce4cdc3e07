//! Who may log in, and what each account may do.
//!
//! - [`AccountStore`] is the trait every source of users implements; the server only
//!   ever talks to an [`Authenticator`], which asks the stores in turn and handles
//!   the anonymous logins. [`ConfigStore`] serves the `[[users]]` of ferry.toml.
//! - [`AccessRules`] is the permission part of the policy engine: per-path rules of
//!   a user and its groups, resolved by longest prefix ([`AccessRules::decide`]).
//! - [`password`] hashes and verifies passwords (argon2id).

pub mod cache;
pub mod explain;
pub mod limits;
pub mod pam;
pub mod password;
pub mod rules;
pub mod sql;
pub mod store;
pub mod system;
pub mod usage;

pub use ferry_config::Permission;
pub use limits::{LimitRefusal, LimitSource, Limits, Sourced};
pub use rules::{AccessRules, DenyReason, PermissionSet, PolicyDecision, RuleSource};
pub use sql::{Ban, SqlStore};
pub use store::{
    Account, AccountKind, AccountStore, AuthError, Authenticator, CertificateRules, ConfigStore,
    KeyOffer, PasswordCheck, StoreError,
};
pub use system::{SystemAuth, SystemStore};
pub use usage::{HoldId, MemoryLedger, Recount, Reservation, Usage, UsageLedger};
