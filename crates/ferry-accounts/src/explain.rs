//! `ferry policy explain`: would this user be allowed this action on this path,
//! and which rule or limit decides?
//!
//! The checks run in the order the server makes them: the login rules (address,
//! time of day), then the permission rule for the path, then the file-name
//! patterns for actions that create a name. The first refusal decides; when all
//! pass, the rule that granted the action is named.

use std::fmt::Write;
use std::net::IpAddr;

use ferry_config::Permission;
use ferry_storage::VirtualPath;
use time::OffsetDateTime;

use crate::limits::format_time;
use crate::rules::{DenyReason, PolicyDecision};
use crate::store::Account;

/// What is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Logging in at all.
    Login,
    /// An action on a path.
    Do(Permission),
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "login" {
            return Ok(Action::Login);
        }
        Permission::ALL
            .into_iter()
            .find(|p| p.word() == s)
            .map(Action::Do)
            .ok_or_else(|| format!("unknown action `{s}`; use login, list, download, upload, overwrite, append, delete, rename, mkdir, rmdir or chmod"))
    }
}

/// The answer, with the reasoning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub allowed: bool,
    /// One line per check made, in order.
    pub steps: Vec<String>,
}

impl Explanation {
    /// The text `ferry policy explain` prints.
    pub fn render(&self, user: &str, action: &str, path: &VirtualPath) -> String {
        let mut out = String::new();
        let verdict = if self.allowed { "allow" } else { "deny" };
        let _ = writeln!(out, "{verdict}: {user} {action} {path}");
        for s in &self.steps {
            let _ = writeln!(out, "  {s}");
        }
        out
    }
}

/// Explains `action` on `path` (in the user's view) for `account`, as a login from
/// `from` at `at` would see it.
pub fn explain(
    account: &Account,
    action: Action,
    path: &VirtualPath,
    from: IpAddr,
    at: OffsetDateTime,
) -> Explanation {
    let mut steps = Vec::new();
    let limits = &account.limits;
    match limits.check_address(from) {
        Ok(()) => steps.push(match (&limits.allow_from, &limits.deny_from) {
            (None, None) => format!("login from {from}: allowed (no address rules)"),
            _ => format!("login from {from}: allowed by allow_from/deny_from"),
        }),
        Err(r) => {
            steps.push(format!("login from {from}: DENIED by {r}"));
            return Explanation {
                allowed: false,
                steps,
            };
        }
    }
    match limits.check_time(at) {
        Ok(()) => steps.push(match &limits.login_hours {
            None => format!("login at {} UTC: allowed (no login_hours)", format_time(at)),
            Some(h) => format!(
                "login at {} UTC: allowed by login_hours (set by {})",
                format_time(at),
                h.source
            ),
        }),
        Err(r) => {
            steps.push(format!("login at {} UTC: DENIED by {r}", format_time(at)));
            return Explanation {
                allowed: false,
                steps,
            };
        }
    }
    if let Some(m) = &limits.max_sessions {
        steps.push(format!(
            "at most {} sessions at once (max_sessions, set by {})",
            m.value, m.source
        ));
    }
    let Action::Do(permission) = action else {
        return Explanation {
            allowed: true,
            steps,
        };
    };
    let decision = account.rules.decide(permission, path);
    let granted = decision.is_allowed();
    let word = permission.word();
    steps.push(match &decision {
        PolicyDecision::Allow { .. } => format!("{word} {path}: {decision}"),
        PolicyDecision::Deny(DenyReason::NoRule) => {
            format!("{word} {path}: DENIED: no permission rule covers this path or any directory above it")
        }
        PolicyDecision::Deny(DenyReason::NotGranted { rule_path, source, granted }) => {
            format!("{word} {path}: DENIED by {source} at {rule_path}, which grants only {granted}")
        }
    });
    if !granted {
        return Explanation {
            allowed: false,
            steps,
        };
    }
    if matches!(
        permission,
        Permission::Upload | Permission::Overwrite | Permission::Append | Permission::Rename
    ) {
        match limits.check_file_name(&path.to_string()) {
            Ok(()) => steps.push(match (&limits.allowed_files, &limits.denied_files) {
                (None, None) => "file name: allowed (no file patterns)".to_owned(),
                _ => "file name: allowed by allowed_files/denied_files".to_owned(),
            }),
            Err(r) => {
                steps.push(format!("file name: DENIED by {r}"));
                return Explanation {
                    allowed: false,
                    steps,
                };
            }
        }
        for (setting, limit) in [
            ("quota_bytes", &limits.quota_bytes),
            ("max_file_size", &limits.max_file_size),
        ] {
            if let Some(l) = limit {
                steps.push(format!(
                    "the upload stops at {setting} {} bytes (set by {})",
                    l.value, l.source
                ));
            }
        }
        if let Some(q) = &limits.quota_files {
            steps.push(format!(
                "a new file needs room under quota_files {} (set by {})",
                q.value, q.source
            ));
        }
    }
    if matches!(
        permission,
        Permission::Download | Permission::Upload | Permission::Overwrite | Permission::Append
    ) {
        let rate = if permission == Permission::Download {
            &limits.download_rate
        } else {
            &limits.upload_rate
        };
        if let Some(r) = rate {
            steps.push(format!(
                "shared by all of the user's sessions: {} bytes/s (set by {})",
                r.value, r.source
            ));
        }
    }
    Explanation {
        allowed: true,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Authenticator, ConfigStore};
    use std::sync::Arc;

    async fn account(text: &str, name: &str) -> Account {
        let c = ferry_config::Config::parse(text).expect("config");
        let store = ConfigStore::from_config(&c).expect("store");
        Authenticator::new(vec![Arc::new(store)], &c.anonymous)
            .expect("auth")
            .account(name)
            .await
            .expect("account")
    }

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lzYWx0ZGVjb3k$8xFNwqFUrBBRlMDa+kHKoXh1qEDyRpDS5nAQKPPgIKc";

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::parse_absolute(s).expect("path")
    }

    fn now() -> OffsetDateTime {
        crate::limits::tests_time("2026-11-23 10:00")
    }

    #[tokio::test]
    async fn names_the_deciding_rule() {
        let text = format!(
            "[[groups]]\nname = \"staff\"\npermissions = {{ \"/shared\" = [\"list\", \"download\"] }}\ndenied_files = [\"*.exe\"]\n\
             [[users]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\ngroups = [\"staff\"]\n\
             permissions = {{ \"/\" = [\"*\"], \"/archive\" = [\"list\", \"download\"] }}\nallow_from = [\"10.0.0.0/8\"]\n"
        );
        let a = account(&text, "alice").await;
        let ok_ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let e = explain(
            &a,
            Action::Do(Permission::Delete),
            &vp("/archive/x"),
            ok_ip,
            now(),
        );
        assert!(!e.allowed);
        let text_out = e.render("alice", "delete", &vp("/archive/x"));
        assert!(
            text_out.starts_with("deny: alice delete /archive/x"),
            "{text_out}"
        );
        assert!(
            text_out.contains("the user's own rule at /archive")
                && text_out.contains("list,download"),
            "{text_out}"
        );

        let e = explain(
            &a,
            Action::Do(Permission::Upload),
            &vp("/docs/setup.EXE"),
            ok_ip,
            now(),
        );
        assert!(!e.allowed);
        assert!(
            e.steps.last().expect("step").contains("denied_files")
                && e.steps.last().expect("step").contains("group staff"),
            "{e:?}"
        );

        let e = explain(
            &a,
            Action::Do(Permission::Download),
            &vp("/shared/f"),
            ok_ip,
            now(),
        );
        assert!(
            e.allowed && e.steps.iter().any(|s| s.contains("group staff")),
            "{e:?}"
        );

        let e = explain(
            &a,
            Action::Login,
            &VirtualPath::root(),
            "192.0.2.1".parse().expect("ip"),
            now(),
        );
        assert!(!e.allowed && e.steps[0].contains("allow_from"), "{e:?}");
        assert_eq!(
            "delete".parse::<Action>(),
            Ok(Action::Do(Permission::Delete))
        );
        assert!("fly".parse::<Action>().is_err());
    }
}
