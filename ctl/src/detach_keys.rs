//! Detach keys of `attach` and `run -it` (`--detach-keys`, Docker's
//! format): a comma-separated sequence of single characters and
//! `ctrl-<c>` keys, `<c>` one of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`;
//! Ctrl-P Ctrl-Q (`ctrl-p,ctrl-q`) by default.
//!
//! The [`Matcher`] watches what is typed: a partial match is held back
//! and sent on as soon as the next byte does not continue it; the whole
//! sequence is swallowed and means "detach".

/// Docker's default: Ctrl-P then Ctrl-Q.
pub const DEFAULT: &str = "ctrl-p,ctrl-q";

/// Parsed detach keys (`--detach-keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(pub Vec<u8>);

/// `--detach-keys`, for clap.
pub fn arg(spec: &str) -> Result<DetachKeys, String> {
    parse(spec).map(DetachKeys)
}

/// The byte sequence `spec` names.
pub fn parse(spec: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for key in spec.split(',') {
        let lower = key.to_ascii_lowercase();
        let code = match (key.as_bytes(), lower.strip_prefix("ctrl-")) {
            ([c], _) if c.is_ascii_graphic() || *c == b' ' => *c,
            (_, Some(rest)) => match rest.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(format!("unknown key {key:?} in detach keys {spec:?}")),
            },
            _ => {
                return Err(format!(
                    "unknown key {key:?} in detach keys {spec:?} (keys are single \
                     characters or ctrl-<a-z@[\\]^_>, separated by commas)"
                ))
            }
        };
        out.push(code);
    }
    Ok(out)
}

/// What the matcher made of some input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// The bytes to send on (held bytes that turned out not to be the
    /// sequence, and everything that is not part of a partial match).
    pub send: Vec<u8>,
    /// Whether the whole sequence was typed: detach; what came after it in
    /// the same input is dropped.
    pub detach: bool,
}

/// Finds the detach sequence in typed input.
#[derive(Debug, Clone)]
pub struct Matcher {
    keys: Vec<u8>,
    /// How many bytes of `keys` the end of the input so far matches.
    held: usize,
}

impl Matcher {
    /// A matcher for `keys` (see [`parse`]); no keys never match.
    pub fn new(keys: Vec<u8>) -> Matcher {
        Matcher { keys, held: 0 }
    }

    /// Feeds typed bytes.
    pub fn feed(&mut self, input: &[u8]) -> Fed {
        let mut fed = Fed::default();
        if self.keys.is_empty() {
            fed.send.extend_from_slice(input);
            return fed;
        }
        for &b in input {
            // The held bytes (a prefix of the keys) and this one: send
            // from the front until what is left is a prefix of the keys.
            let mut pending: Vec<u8> = self.keys[..self.held].to_vec();
            pending.push(b);
            let mut start = 0;
            while !self.keys.starts_with(&pending[start..]) {
                fed.send.push(pending[start]);
                start += 1;
            }
            self.held = pending.len() - start;
            if self.held == self.keys.len() {
                self.held = 0;
                fed.detach = true;
                return fed;
            }
        }
        fed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u8 = 0x10;
    const Q: u8 = 0x11;

    #[test]
    fn parses_dockers_format() {
        assert_eq!(parse(DEFAULT), Ok(vec![P, Q]));
        assert_eq!(parse("Ctrl-A,x,ctrl-@"), Ok(vec![1, b'x', 0]));
        assert_eq!(
            parse("ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,ctrl-z"),
            Ok(vec![27, 28, 29, 30, 31, 26])
        );
        for bad in [
            "",
            "ctrl-",
            "ctrl-1",
            "ctrl-pq",
            "xy",
            "ctrl-p,,ctrl-q",
            "é",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_sequence_detaches_and_is_swallowed() {
        let mut m = Matcher::new(vec![P, Q]);
        assert_eq!(
            m.feed(b"ls\r"),
            Fed {
                send: b"ls\r".to_vec(),
                detach: false
            }
        );
        let f = m.feed(&[b'a', P, Q, b'z']);
        assert_eq!((f.send, f.detach), (b"a".to_vec(), true));
    }

    #[test]
    fn a_partial_match_is_held_across_reads_then_sent_on() {
        let mut m = Matcher::new(vec![P, Q]);
        assert_eq!(m.feed(&[b'x', P]).send, b"x");
        // Ctrl-P then something else: both go through.
        let f = m.feed(b"y");
        assert_eq!((f.send, f.detach), (vec![P, b'y'], false));
        // Split across reads, it still detaches.
        assert_eq!(m.feed(&[P]), Fed::default());
        assert!(m.feed(&[Q]).detach);
        // Ctrl-P Ctrl-P Ctrl-Q: the first Ctrl-P is sent, the rest detaches.
        let f = m.feed(&[P, P, Q]);
        assert_eq!((f.send, f.detach), (vec![P], true));
    }

    #[test]
    fn overlapping_sequences_find_the_longest_held_prefix() {
        let mut m = Matcher::new(b"aab".to_vec());
        let f = m.feed(b"aaab");
        assert_eq!((f.send, f.detach), (b"a".to_vec(), true));
        let f = m.feed(b"aac");
        assert_eq!((f.send, f.detach), (b"aac".to_vec(), false));
        let mut none = Matcher::new(vec![]);
        assert_eq!(none.feed(&[P, Q]).send, vec![P, Q]);
    }
}
