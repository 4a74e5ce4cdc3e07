//! Path resolution: the one place where a client's path text becomes a path.
//!
//! A [`VirtualPath`] is absolute within a user's view (`/` is the user's home) and
//! normalised: no empty, `.` or `..` components, none longer than 255 bytes, no NUL.
//! `..` at `/` stays at `/`, as in a chroot, so no path text can name anything above
//! the home. Symbolic links are the backend's to police (see `local`).

use std::fmt;

/// The longest file name, in bytes (the common file-system limit).
pub const MAX_NAME: usize = 255;
/// The longest path, in bytes.
pub const MAX_PATH: usize = 4096;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path contains a NUL byte")]
    ContainsNul,
    #[error("file name longer than {MAX_NAME} bytes")]
    NameTooLong,
    #[error("path longer than {MAX_PATH} bytes")]
    PathTooLong,
    #[error("not a valid file name")]
    InvalidName,
}

/// An absolute, normalised path in a user's view.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath {
    /// `/`-separated, without a leading slash; empty for the root.
    inner: String,
}

impl VirtualPath {
    /// `/`.
    pub fn root() -> Self {
        VirtualPath {
            inner: String::new(),
        }
    }

    /// Resolves `text` (absolute, or relative to `self`) to a path.
    pub fn resolve(&self, text: &str) -> Result<VirtualPath, PathError> {
        if text.contains('\0') {
            return Err(PathError::ContainsNul);
        }
        if text.len() > MAX_PATH {
            return Err(PathError::PathTooLong);
        }
        let mut parts: Vec<&str> = if text.starts_with('/') {
            Vec::new()
        } else {
            self.components().collect()
        };
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name if name.len() > MAX_NAME => return Err(PathError::NameTooLong),
                name => parts.push(name),
            }
        }
        let inner = parts.join("/");
        // The limit is on the absolute form ("/" + inner), so that a resolved path,
        // written out, resolves again.
        if inner.len() + 1 > MAX_PATH {
            return Err(PathError::PathTooLong);
        }
        Ok(VirtualPath { inner })
    }

    /// Parses an absolute path written in configuration (a home, a rule's path).
    pub fn parse_absolute(text: &str) -> Result<VirtualPath, PathError> {
        if !text.starts_with('/') {
            return Err(PathError::InvalidName);
        }
        Self::root().resolve(text)
    }

    /// `self/name`, for a single name read from a directory.
    pub fn join_name(&self, name: &str) -> Result<VirtualPath, PathError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(PathError::InvalidName);
        }
        self.resolve(name)
    }

    /// `self/other`, where `other` is a path in another view rooted here.
    pub fn join(&self, other: &VirtualPath) -> VirtualPath {
        match (self.is_root(), other.is_root()) {
            (_, true) => self.clone(),
            (true, false) => other.clone(),
            (false, false) => VirtualPath {
                inner: format!("{}/{}", self.inner, other.inner),
            },
        }
    }

    pub fn is_root(&self) -> bool {
        self.inner.is_empty()
    }

    /// The components from the top down.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.inner.split('/').filter(|c| !c.is_empty())
    }

    /// The last component; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.inner.rsplit('/').next()
        }
    }

    /// The directory holding this path; `None` for the root.
    pub fn parent(&self) -> Option<VirtualPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.inner.rsplit_once('/') {
            Some((p, _)) => VirtualPath {
                inner: p.to_owned(),
            },
            None => VirtualPath::root(),
        })
    }

    /// Whether `self` is `base` or lies below it.
    pub fn starts_with(&self, base: &VirtualPath) -> bool {
        base.is_root()
            || self.inner == base.inner
            || (self.inner.starts_with(&base.inner)
                && self.inner.as_bytes().get(base.inner.len()) == Some(&b'/'))
    }

    /// The path relative to the root: `a/b`, or `.` for the root.
    pub fn relative(&self) -> &str {
        if self.is_root() { "." } else { &self.inner }
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.inner)
    }
}

impl fmt::Debug for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtualPath(/{})", self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> VirtualPath {
        VirtualPath::parse_absolute(s).expect("path")
    }

    #[test]
    fn resolves_relative_and_absolute() {
        let cwd = at("/a/b");
        assert_eq!(cwd.resolve("c").expect("ok").to_string(), "/a/b/c");
        assert_eq!(cwd.resolve("../c/./d/").expect("ok").to_string(), "/a/c/d");
        assert_eq!(cwd.resolve("/x//y").expect("ok").to_string(), "/x/y");
        assert_eq!(
            cwd.resolve("../../../../etc/passwd")
                .expect("ok")
                .to_string(),
            "/etc/passwd"
        );
        assert_eq!(cwd.resolve("..").expect("ok").to_string(), "/a");
        assert_eq!(at("/").resolve("..").expect("ok"), VirtualPath::root());
    }

    #[test]
    fn refuses_bad_names() {
        let root = VirtualPath::root();
        assert_eq!(root.resolve("a\0b"), Err(PathError::ContainsNul));
        assert_eq!(root.resolve(&"x".repeat(256)), Err(PathError::NameTooLong));
        assert!(root.resolve(&"x".repeat(255)).is_ok());
        assert_eq!(
            root.resolve(&"a/".repeat(3000)),
            Err(PathError::PathTooLong)
        );
        assert_eq!(root.join_name(".."), Err(PathError::InvalidName));
    }

    #[test]
    fn the_limit_is_on_the_absolute_form() {
        // Found by the path_resolver fuzz target: a relative path of 4088 bytes
        // under /home/user made a result whose written form was 4097 bytes.
        let text = "ab/".repeat(1365) + "c"; // 4096 bytes, relative to /
        assert_eq!(text.len(), MAX_PATH);
        match VirtualPath::root().resolve(&text) {
            Ok(p) => assert_eq!(VirtualPath::root().resolve(&p.to_string()), Ok(p.clone())),
            Err(e) => assert_eq!(e, PathError::PathTooLong),
        }
        let exact = "x".repeat(200) + &"/y".repeat((MAX_PATH - 201) / 2);
        if let Ok(p) = VirtualPath::root().resolve(&exact) {
            assert!(p.to_string().len() <= MAX_PATH);
            assert_eq!(VirtualPath::root().resolve(&p.to_string()), Ok(p));
        }
    }

    #[test]
    fn parents_and_prefixes() {
        let p = at("/a/bc");
        assert_eq!(p.parent(), Some(at("/a")));
        assert_eq!(p.file_name(), Some("bc"));
        assert!(p.starts_with(&at("/a")));
        assert!(!p.starts_with(&at("/a/b")));
        assert!(p.starts_with(&VirtualPath::root()));
        assert_eq!(at("/h").join(&p).to_string(), "/h/a/bc");
        assert_eq!(VirtualPath::root().relative(), ".");
    }

    proptest! {
        /// Whatever the text, the result is normalised and stays in the view.
        #[test]
        fn resolution_is_normalised(cwd in "(/[a-z.]{1,4}){0,4}", text in "[a-z./]{0,40}") {
            let base = VirtualPath::parse_absolute(if cwd.is_empty() { "/" } else { &cwd }).expect("cwd");
            let r = base.resolve(&text).expect("resolves");
            for c in r.components() {
                prop_assert!(c != "." && c != ".." && !c.is_empty() && !c.contains('/'));
            }
            // Resolving the result again from anywhere gives the same path.
            prop_assert_eq!(VirtualPath::root().resolve(&r.to_string()).expect("again"), r.clone());
            let rel = r.relative();
            prop_assert!(!rel.starts_with('/'));
        }

        /// `..` can never climb above the view, however many there are.
        #[test]
        fn dotdot_never_escapes(ups in 0usize..20, tail in "[a-z]{1,5}") {
            let text = format!("{}{}", "../".repeat(ups), tail);
            let r = VirtualPath::parse_absolute("/home/u").expect("base").resolve(&text).expect("ok");
            prop_assert!(r.components().count() >= 1);
            prop_assert!(!r.to_string().contains(".."));
        }
    }
}
