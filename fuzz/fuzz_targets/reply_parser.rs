//! Any bytes a server sends as replies: parsing never panics, and every reply it
//! yields encodes and parses back to the same code and line count.
#![no_main]

use ferry_proto::ReplyParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(replies) = ReplyParser::parse_all(data) {
        for reply in replies {
            assert!((100..600).contains(&reply.code()));
            let again = ReplyParser::parse_all(&reply.to_bytes()).expect("an encoded reply parses");
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].code(), reply.code());
        }
    }
});
