//! Telnet control sequences on the control connection (RFC 959 §4.1.3, RFC 854).
//!
//! Clients send `IAC IP IAC DM` (often as TCP urgent data) before `ABOR`; some send
//! `IAC` sequences elsewhere. The control connection is otherwise plain text, so the
//! sequences are removed before a line is parsed. `IAC IAC` stands for a literal 0xFF.

/// Interpret As Command.
pub const IAC: u8 = 0xFF;

/// Removes Telnet `IAC x` pairs from `line` in place; `IAC IAC` becomes one 0xFF.
/// Option negotiation (`IAC WILL/WONT/DO/DONT opt`) drops its option byte as well.
pub fn strip(line: &mut Vec<u8>) {
    if !line.contains(&IAC) {
        return;
    }
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b != IAC {
            out.push(b);
            i += 1;
            continue;
        }
        match line.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            // WILL, WONT, DO, DONT carry one option byte.
            Some(&(251..=254)) => i += 3,
            Some(_) => i += 2,
            None => i += 1,
        }
    }
    *line = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_interrupt_before_abor() {
        let mut line = vec![IAC, 244, IAC, 242, b'A', b'B', b'O', b'R'];
        strip(&mut line);
        assert_eq!(line, b"ABOR");
    }

    #[test]
    fn keeps_escaped_iac_and_drops_negotiation() {
        let mut line = vec![b'a', IAC, IAC, b'b', IAC, 253, 1, b'c'];
        strip(&mut line);
        assert_eq!(line, vec![b'a', IAC, b'b', b'c']);
    }
}
