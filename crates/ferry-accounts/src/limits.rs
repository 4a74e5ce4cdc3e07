//! The limits of an account, resolved from the user and its groups, and the checks
//! made with them.
//!
//! Resolution (SPEC.md): for every setting other than permissions, the user's own
//! value wins; otherwise the first of its groups, in the order listed, that sets
//! it. Each resolved value remembers where it came from, so that a refusal (and
//! `ferry policy explain`) can name the exact setting that decided.

use std::fmt;
use std::net::IpAddr;

use ferry_config::{AccountSettings, ByteRate, ByteSize, Cidr, FilePattern, LoginHours};
use time::OffsetDateTime;

/// Where a resolved setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    User(String),
    Group(String),
}

impl fmt::Display for LimitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitSource::User(n) => write!(f, "user {n}"),
            LimitSource::Group(n) => write!(f, "group {n}"),
        }
    }
}

/// A setting's value and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: LimitSource,
}

/// The limits that apply to one account.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub quota_bytes: Option<Sourced<u64>>,
    pub quota_files: Option<Sourced<u64>>,
    pub max_sessions: Option<Sourced<u32>>,
    pub download_rate: Option<Sourced<u64>>,
    pub upload_rate: Option<Sourced<u64>>,
    pub allow_from: Option<Sourced<Vec<Cidr>>>,
    pub deny_from: Option<Sourced<Vec<Cidr>>>,
    pub login_hours: Option<Sourced<Vec<LoginHours>>>,
    pub allowed_files: Option<Sourced<Vec<FilePattern>>>,
    pub denied_files: Option<Sourced<Vec<FilePattern>>>,
    pub max_file_size: Option<Sourced<u64>>,
}

/// A refusal by a limit, with the setting that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRefusal {
    /// The setting, e.g. `deny_from`.
    pub setting: &'static str,
    /// Why, in words, naming the value and its source.
    pub reason: String,
}

impl fmt::Display for LimitRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.reason)
    }
}

fn pick<T: Clone>(
    user: (&str, &AccountSettings),
    groups: &[(String, AccountSettings)],
    get: impl Fn(&AccountSettings) -> Option<T>,
) -> Option<Sourced<T>> {
    if let Some(value) = get(user.1) {
        return Some(Sourced {
            value,
            source: LimitSource::User(user.0.to_owned()),
        });
    }
    groups.iter().find_map(|(name, g)| {
        get(g).map(|value| Sourced {
            value,
            source: LimitSource::Group(name.clone()),
        })
    })
}

impl Limits {
    /// Resolves a user's limits from its own settings and its groups' (in order).
    pub fn resolve(
        user_name: &str,
        user: &AccountSettings,
        groups: &[(String, AccountSettings)],
    ) -> Limits {
        let u = (user_name, user);
        Limits {
            quota_bytes: pick(u, groups, |s| s.quota_bytes.map(|b: ByteSize| b.0)),
            quota_files: pick(u, groups, |s| s.quota_files),
            max_sessions: pick(u, groups, |s| s.max_sessions),
            download_rate: pick(u, groups, |s| s.download_rate.map(|r: ByteRate| r.0)),
            upload_rate: pick(u, groups, |s| s.upload_rate.map(|r: ByteRate| r.0)),
            allow_from: pick(u, groups, |s| s.allow_from.clone()),
            deny_from: pick(u, groups, |s| s.deny_from.clone()),
            login_hours: pick(u, groups, |s| s.login_hours.clone()),
            allowed_files: pick(u, groups, |s| s.allowed_files.clone()),
            denied_files: pick(u, groups, |s| s.denied_files.clone()),
            max_file_size: pick(u, groups, |s| s.max_file_size.map(|b: ByteSize| b.0)),
        }
    }

    /// `deny_from` first (it always wins), then `allow_from` (when set, the address
    /// must be in it).
    pub fn check_address(&self, ip: IpAddr) -> Result<(), LimitRefusal> {
        if let Some(deny) = &self.deny_from
            && let Some(net) = deny.value.iter().find(|n| n.contains(ip))
        {
            return Err(LimitRefusal {
                setting: "deny_from",
                reason: format!("{ip} is in {net} (set by {})", deny.source),
            });
        }
        if let Some(allow) = &self.allow_from
            && !allow.value.iter().any(|n| n.contains(ip))
        {
            let list: Vec<String> = allow.value.iter().map(ToString::to_string).collect();
            return Err(LimitRefusal {
                setting: "allow_from",
                reason: format!(
                    "{ip} is not in [{}] (set by {})",
                    list.join(", "),
                    allow.source
                ),
            });
        }
        Ok(())
    }

    /// `login_hours`: when set, `at` must fall inside one of the spans.
    pub fn check_time(&self, at: OffsetDateTime) -> Result<(), LimitRefusal> {
        if let Some(hours) = &self.login_hours
            && !hours.value.iter().any(|h| h.contains(at))
        {
            let list: Vec<&str> = hours.value.iter().map(LoginHours::text).collect();
            return Err(LimitRefusal {
                setting: "login_hours",
                reason: format!(
                    "{} UTC is outside [{}] (set by {})",
                    crate::limits::format_time(at),
                    list.join(", "),
                    hours.source
                ),
            });
        }
        Ok(())
    }

    /// `denied_files` first, then `allowed_files` (when set, the name must match one).
    /// `path` is the path in the user's view.
    pub fn check_file_name(&self, path: &str) -> Result<(), LimitRefusal> {
        if let Some(denied) = &self.denied_files
            && let Some(p) = denied.value.iter().find(|p| p.matches(path))
        {
            return Err(LimitRefusal {
                setting: "denied_files",
                reason: format!("{path} matches \"{p}\" (set by {})", denied.source),
            });
        }
        if let Some(allowed) = &self.allowed_files
            && !allowed.value.is_empty()
            && !allowed.value.iter().any(|p| p.matches(path))
        {
            let list: Vec<&str> = allowed.value.iter().map(FilePattern::text).collect();
            return Err(LimitRefusal {
                setting: "allowed_files",
                reason: format!(
                    "{path} matches none of [{}] (set by {})",
                    list.join(", "),
                    allowed.source
                ),
            });
        }
        Ok(())
    }
}

/// `YYYY-MM-DD HH:MM` for messages.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `YYYY-MM-DD HH:MM` (UTC) to a time, for tests.
#[cfg(test)]
pub(crate) fn tests_time(s: &str) -> OffsetDateTime {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::PrimitiveDateTime::parse(s, &f)
        .expect("test time")
        .assume_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> AccountSettings {
        toml::from_str(toml).expect("settings")
    }

    #[test]
    fn user_wins_then_first_group_in_order() {
        let user = settings("max_sessions = 2");
        let groups = vec![
            (
                "a".to_owned(),
                settings("max_sessions = 9\nquota_bytes = \"1 KiB\""),
            ),
            (
                "b".to_owned(),
                settings("quota_bytes = \"2 KiB\"\nupload_rate = \"1 MiB/s\""),
            ),
        ];
        let l = Limits::resolve("u", &user, &groups);
        assert_eq!(
            l.max_sessions,
            Some(Sourced {
                value: 2,
                source: LimitSource::User("u".into())
            })
        );
        assert_eq!(
            l.quota_bytes,
            Some(Sourced {
                value: 1024,
                source: LimitSource::Group("a".into())
            })
        );
        assert_eq!(
            l.upload_rate.map(|s| s.source),
            Some(LimitSource::Group("b".into()))
        );
        assert!(l.download_rate.is_none());
    }

    #[test]
    fn addresses_at_the_boundary() {
        let l = Limits::resolve(
            "u",
            &settings("allow_from = [\"192.0.2.0/25\"]\ndeny_from = [\"192.0.2.64/26\"]"),
            &[],
        );
        assert!(l.check_address("192.0.2.0".parse().expect("ip")).is_ok());
        assert!(l.check_address("192.0.2.63".parse().expect("ip")).is_ok());
        assert_eq!(
            l.check_address("192.0.2.64".parse().expect("ip"))
                .map_err(|r| r.setting),
            Err("deny_from")
        );
        assert_eq!(
            l.check_address("192.0.2.128".parse().expect("ip"))
                .map_err(|r| r.setting),
            Err("allow_from")
        );
        assert!(
            Limits::default()
                .check_address("203.0.113.1".parse().expect("ip"))
                .is_ok()
        );
    }

    #[test]
    fn file_names() {
        let l = Limits::resolve(
            "u",
            &settings("denied_files = [\"*.exe\"]\nallowed_files = [\"*.txt\", \"*.exe\"]"),
            &[],
        );
        assert!(l.check_file_name("/a/b.txt").is_ok());
        let r = l.check_file_name("/a/b.EXE").expect_err("denied wins");
        assert_eq!(r.setting, "denied_files");
        assert!(
            r.reason.contains("\"*.exe\"") && r.reason.contains("user u"),
            "{r}"
        );
        assert_eq!(
            l.check_file_name("/a/b.jpg").map_err(|r| r.setting),
            Err("allowed_files")
        );
    }
}
