//! Any bytes a client sends as a control line: parsing never panics, and what it
//! accepts has a verb and keeps path arguments free of NUL.
#![no_main]

use ferry_proto::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut line = data.to_vec();
    ferry_proto::telnet::strip(&mut line);
    if let Ok(command) = Command::parse(&line) {
        assert!(!command.verb().is_empty());
        if let Some(path) = command.path_arg() {
            assert!(!path.as_str().contains('\0'));
        }
    }
});
