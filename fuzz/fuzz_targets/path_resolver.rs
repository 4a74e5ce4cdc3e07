//! Any path text a client sends: resolution never panics, never yields `.` or `..`
//! components, stays within the limits, and is stable when resolved again.
#![no_main]

use ferry_storage::VirtualPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cwd = VirtualPath::parse_absolute("/home/user").expect("cwd");
    if let Ok(path) = cwd.resolve(text) {
        for c in path.components() {
            assert!(!c.is_empty() && c != "." && c != ".." && !c.contains('/') && !c.contains('\0'));
            assert!(c.len() <= ferry_storage::path::MAX_NAME);
        }
        let again = VirtualPath::root().resolve(&path.to_string()).expect("a resolved path resolves");
        assert_eq!(again, path);
    }
});
