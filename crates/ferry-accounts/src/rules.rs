//! Per-path permission rules and how they resolve (SPEC.md, "Resolution").
//!
//! For an action on a path, the rule with the longest path prefix that matches
//! decides. At the same prefix a user's own rule beats its groups' rules, and the
//! rules of several groups at that prefix are unioned. A path no rule covers is
//! denied.

use std::collections::BTreeMap;
use std::fmt;

use ferry_config::{Permission, PermissionTable, PermissionWord};
use ferry_storage::VirtualPath;

/// A set of permissions.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct PermissionSet(u16);

impl PermissionSet {
    pub const NONE: PermissionSet = PermissionSet(0);
    pub const ALL: PermissionSet = PermissionSet((1 << Permission::ALL.len()) - 1);

    fn bit(p: Permission) -> u16 {
        1 << (p as u16)
    }

    pub fn of(perms: &[Permission]) -> Self {
        PermissionSet(perms.iter().fold(0, |acc, &p| acc | Self::bit(p)))
    }

    pub fn from_words(words: &[PermissionWord]) -> Self {
        words.iter().fold(Self::NONE, |acc, w| match w {
            PermissionWord::All => Self::ALL,
            PermissionWord::One(p) => acc.union(Self::of(&[*p])),
        })
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & Self::bit(p) != 0
    }

    pub fn union(self, other: Self) -> Self {
        PermissionSet(self.0 | other.0)
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::ALL {
            return f.write_str("*");
        }
        let words: Vec<&str> = Permission::ALL
            .iter()
            .filter(|p| self.contains(**p))
            .map(|p| p.word())
            .collect();
        if words.is_empty() {
            f.write_str("(none)")
        } else {
            f.write_str(&words.join(","))
        }
    }
}

/// Where a deciding rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    /// The user's own `permissions`.
    User,
    /// The union of these groups' rules at the same path.
    Groups(Vec<String>),
    /// A built-in rule (anonymous access, a user with no rules at all).
    Builtin(&'static str),
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSource::User => f.write_str("the user's own rule"),
            RuleSource::Groups(g) => write!(f, "the rule of group {}", g.join(" + ")),
            RuleSource::Builtin(why) => write!(f, "the built-in rule for {why}"),
        }
    }
}

/// Why an action was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No rule covers the path.
    NoRule,
    /// The deciding rule does not grant the action.
    NotGranted {
        rule_path: VirtualPath,
        source: RuleSource,
        granted: PermissionSet,
    },
}

/// The outcome of a policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision {
    Allow {
        rule_path: VirtualPath,
        source: RuleSource,
    },
    Deny(DenyReason),
}

impl PolicyDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, PolicyDecision::Allow { .. })
    }
}

impl fmt::Display for PolicyDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyDecision::Allow { rule_path, source } => {
                write!(f, "allowed by {source} at {rule_path}")
            }
            PolicyDecision::Deny(DenyReason::NoRule) => {
                f.write_str("denied: no rule covers this path")
            }
            PolicyDecision::Deny(DenyReason::NotGranted {
                rule_path,
                source,
                granted,
            }) => {
                write!(
                    f,
                    "denied by {source} at {rule_path}, which grants {granted}"
                )
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct RuleAt {
    user: Option<PermissionSet>,
    /// Groups with a rule here, and the union of their permissions.
    groups: Vec<String>,
    group_union: PermissionSet,
    builtin: Option<(&'static str, PermissionSet)>,
}

/// The resolved permission rules of one account.
///
/// Every session holds its account's rules, so they are kept compact: a
/// slice sorted by path (a few rules take a few hundred bytes; a `BTreeMap`
/// node took ~900 bytes even for one).
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    by_path: Box<[(VirtualPath, RuleAt)]>,
}

impl AccessRules {
    /// Rules from a user's own table and its groups' tables (in the user's order).
    /// Paths must be absolute FTP paths relative to the home.
    pub fn from_tables<'a>(
        user: &PermissionTable,
        groups: impl IntoIterator<Item = (&'a str, &'a PermissionTable)>,
    ) -> Result<Self, ferry_storage::PathError> {
        let mut by_path: BTreeMap<VirtualPath, RuleAt> = BTreeMap::new();
        for (path, words) in user {
            let at = by_path
                .entry(VirtualPath::parse_absolute(path)?)
                .or_default();
            at.user = Some(PermissionSet::from_words(words));
        }
        for (group, table) in groups {
            for (path, words) in table {
                let at = by_path
                    .entry(VirtualPath::parse_absolute(path)?)
                    .or_default();
                at.groups.push(group.to_owned());
                at.group_union = at.group_union.union(PermissionSet::from_words(words));
            }
        }
        if by_path.is_empty() {
            return Ok(Self::builtin(
                "a user with no rules (full access to the home)",
                PermissionSet::ALL,
            ));
        }
        Ok(AccessRules {
            by_path: by_path.into_iter().collect(),
        })
    }

    /// A single built-in rule at `/`.
    pub fn builtin(why: &'static str, perms: PermissionSet) -> Self {
        let at = RuleAt {
            builtin: Some((why, perms)),
            ..RuleAt::default()
        };
        AccessRules {
            by_path: Box::new([(VirtualPath::root(), at)]),
        }
    }

    /// The rule set at exactly `path`.
    fn rule_at(&self, path: &VirtualPath) -> Option<&RuleAt> {
        let i = self.by_path.binary_search_by(|(p, _)| p.cmp(path)).ok()?;
        self.by_path.get(i).map(|(_, at)| at)
    }

    /// Decides whether `action` is allowed on `path` (relative to the home).
    pub fn decide(&self, action: Permission, path: &VirtualPath) -> PolicyDecision {
        // The longest matching prefix: walk from the path up to the root.
        let mut candidate = Some(path.clone());
        while let Some(p) = candidate {
            if let Some(at) = self.rule_at(&p) {
                let (source, granted) = if let Some(user) = at.user {
                    (RuleSource::User, user)
                } else if !at.groups.is_empty() {
                    (RuleSource::Groups(at.groups.clone()), at.group_union)
                } else if let Some((why, perms)) = at.builtin {
                    (RuleSource::Builtin(why), perms)
                } else {
                    candidate = p.parent();
                    continue;
                };
                return if granted.contains(action) {
                    PolicyDecision::Allow {
                        rule_path: p,
                        source,
                    }
                } else {
                    PolicyDecision::Deny(DenyReason::NotGranted {
                        rule_path: p,
                        source,
                        granted,
                    })
                };
            }
            candidate = p.parent();
        }
        PolicyDecision::Deny(DenyReason::NoRule)
    }

    /// Shortcut for `decide(..).is_allowed()`.
    pub fn allows(&self, action: Permission, path: &VirtualPath) -> bool {
        self.decide(action, path).is_allowed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(rules: &[(&str, &str)]) -> BTreeMap<String, Vec<PermissionWord>> {
        rules
            .iter()
            .map(|(p, words)| {
                (
                    p.to_string(),
                    words
                        .split(',')
                        .filter(|w| !w.is_empty())
                        .map(|w| w.parse().expect("word"))
                        .collect(),
                )
            })
            .collect()
    }

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::parse_absolute(s).expect("path")
    }

    #[test]
    fn longest_prefix_then_user_over_groups_then_group_union() {
        let user = table(&[("/", "*"), ("/archive", "list,download")]);
        let staff = table(&[("/archive/inbox", "upload"), ("/shared", "list")]);
        let ops = table(&[("/archive/inbox", "list"), ("/shared", "download")]);
        let r = AccessRules::from_tables(&user, [("staff", &staff), ("ops", &ops)]).expect("rules");

        assert!(r.allows(Permission::Delete, &vp("/docs/x")));
        assert!(!r.allows(Permission::Delete, &vp("/archive/x")));
        assert!(r.allows(Permission::Download, &vp("/archive/x")));
        // /archive/inbox: only groups have a rule there; their union decides.
        assert!(r.allows(Permission::Upload, &vp("/archive/inbox/f")));
        assert!(r.allows(Permission::List, &vp("/archive/inbox")));
        assert!(!r.allows(Permission::Download, &vp("/archive/inbox/f")));
        // /archived is not below /archive.
        assert!(r.allows(Permission::Delete, &vp("/archived")));
        match r.decide(Permission::Delete, &vp("/archive/x")) {
            PolicyDecision::Deny(DenyReason::NotGranted {
                rule_path, source, ..
            }) => {
                assert_eq!(rule_path, vp("/archive"));
                assert_eq!(source, RuleSource::User);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn user_rule_beats_groups_at_the_same_path() {
        let user = table(&[("/", "list")]);
        let g = table(&[("/", "*")]);
        let r = AccessRules::from_tables(&user, [("g", &g)]).expect("rules");
        assert!(!r.allows(Permission::Upload, &vp("/f")));
    }

    #[test]
    fn no_rules_means_full_home_and_uncovered_means_denied() {
        let empty = BTreeMap::new();
        let r = AccessRules::from_tables(&empty, []).expect("rules");
        assert!(r.allows(Permission::Rmdir, &vp("/a/b")));
        let only_sub = table(&[("/pub", "list")]);
        let r = AccessRules::from_tables(&only_sub, []).expect("rules");
        assert_eq!(
            r.decide(Permission::List, &vp("/")),
            PolicyDecision::Deny(DenyReason::NoRule)
        );
    }

    proptest! {
        /// A rule deeper in the tree always overrides one above it.
        #[test]
        fn deeper_rule_wins(depth in 1usize..5, extra in 0usize..3, grant in any::<bool>()) {
            let deep: String = (0..depth).map(|i| format!("/d{i}")).collect();
            let below: String = (0..extra).map(|i| format!("/e{i}")).collect();
            let user = table(&[("/", if grant { "" } else { "*" }), (&deep, if grant { "*" } else { "" })]);
            let r = AccessRules::from_tables(&user, []).expect("rules");
            prop_assert_eq!(r.allows(Permission::Download, &vp(&format!("{deep}{below}"))), grant);
            prop_assert_eq!(r.allows(Permission::Download, &vp("/elsewhere")), !grant);
        }
    }
}
