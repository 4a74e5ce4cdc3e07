//! TYPE A line-ending conversion (RFC 959 §3.1.1.1).
//!
//! On the wire, ASCII lines end in CRLF; on the server's disk they end in LF.
//! Both converters keep state across chunk boundaries, so a CR at the end of one
//! buffer and an LF at the start of the next are handled as one line ending.

/// Converts stored text (LF line endings) to the wire form (CRLF).
#[derive(Debug, Default)]
pub struct ToWire {
    previous_was_cr: bool,
}

impl ToWire {
    /// Appends the wire form of `input` to `out`. An LF already preceded by CR is
    /// left alone, so files that already use CRLF are not doubled.
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 16);
        for &b in input {
            if b == b'\n' && !self.previous_was_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.previous_was_cr = b == b'\r';
        }
    }
}

/// Converts the wire form (CRLF) to stored text (LF).
#[derive(Debug, Default)]
pub struct FromWire {
    pending_cr: bool,
}

impl FromWire {
    /// Appends the stored form of `input` to `out`. A CR not followed by LF is kept.
    pub fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Flushes a CR that ended the stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn to_wire_chunks(data: &[u8], split: usize) -> Vec<u8> {
        let mut conv = ToWire::default();
        let mut out = Vec::new();
        let split = split.min(data.len());
        conv.convert(&data[..split], &mut out);
        conv.convert(&data[split..], &mut out);
        out
    }

    fn from_wire_chunks(data: &[u8], split: usize) -> Vec<u8> {
        let mut conv = FromWire::default();
        let mut out = Vec::new();
        let split = split.min(data.len());
        conv.convert(&data[..split], &mut out);
        conv.convert(&data[split..], &mut out);
        conv.finish(&mut out);
        out
    }

    #[test]
    fn converts_both_ways() {
        assert_eq!(to_wire_chunks(b"a\nb\r\nc\n", 2), b"a\r\nb\r\nc\r\n");
        assert_eq!(from_wire_chunks(b"a\r\nb\rc\r", 2), b"a\nb\rc\r");
        assert_eq!(from_wire_chunks(b"a\r\n", 2), b"a\n");
    }

    proptest! {
        // Text without CR survives a trip to the wire and back, wherever it is split.
        #[test]
        fn round_trip_of_lf_text(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'x'), any::<u8>().prop_filter("no CR", |b| *b != b'\r')], 0..200), s1 in 0usize..200, s2 in 0usize..400) {
            let wire = to_wire_chunks(&data, s1);
            prop_assert_eq!(from_wire_chunks(&wire, s2), data);
        }

        // Where the chunks are cut never changes the result.
        #[test]
        fn split_point_is_irrelevant(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..200), s in 0usize..200) {
            prop_assert_eq!(from_wire_chunks(&data, s), from_wire_chunks(&data, 0));
            prop_assert_eq!(to_wire_chunks(&data, s), to_wire_chunks(&data, 0));
        }
    }
}
