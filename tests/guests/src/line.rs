//! Typed bytes into lines, and showing a line's bytes safely.

use core::fmt;

/// Longest line kept; bytes past it are counted, not kept.
pub const MAX_LINE: usize = 120;

/// Collects bytes into lines: CR or LF ends one (so CR LF ends one, and empty lines
/// are skipped), backspace or DEL removes the last byte.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    bytes: [u8; MAX_LINE],
    len: usize,
    /// Bytes of the current line that did not fit.
    overflow: usize,
}

/// A finished line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// Its bytes, without the line end (the first [`MAX_LINE`]).
    pub bytes: &'a [u8],
    /// How many more bytes it had.
    pub overflow: usize,
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { bytes: [0; MAX_LINE], len: 0, overflow: 0 }
    }

    /// Takes one byte; returns the line it ended, if it ended a non-empty one.
    pub fn push(&mut self, byte: u8) -> Option<Line<'_>> {
        match byte {
            b'\r' | b'\n' => {
                let (len, overflow) = (self.len, self.overflow);
                self.len = 0;
                self.overflow = 0;
                (len > 0).then_some(Line { bytes: &self.bytes[..len], overflow })
            }
            0x08 | 0x7f => {
                if self.overflow > 0 {
                    self.overflow -= 1;
                } else {
                    self.len = self.len.saturating_sub(1);
                }
                None
            }
            _ => {
                match self.bytes.get_mut(self.len) {
                    Some(slot) => {
                        *slot = byte;
                        self.len += 1;
                    }
                    None => self.overflow += 1,
                }
                None
            }
        }
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

/// Shows bytes as text: printable ASCII as it is (with `"` and `\` escaped), any
/// other byte as `\xNN`, so a line never carries control bytes to the console.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            match b {
                b'"' | b'\\' => write!(f, "\\{}", b as char)?,
                0x20..=0x7e => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(String, usize)> {
        let mut buf = LineBuffer::new();
        input
            .iter()
            .filter_map(|&b| buf.push(b).map(|l| (Escaped(l.bytes).to_string(), l.overflow)))
            .collect()
    }

    #[test]
    fn cr_or_lf_ends_a_line_and_empty_lines_are_skipped() {
        assert_eq!(
            lines(b"hi\rquit\r\n\nthree\nrest"),
            [("hi".into(), 0), ("quit".into(), 0), ("three".into(), 0)]
        );
    }

    #[test]
    fn backspace_edits_and_long_lines_are_cut() {
        assert_eq!(lines(b"quix\x7ft\r"), [("quit".into(), 0)]);
        assert_eq!(lines(b"\x08\x08a\r"), [("a".into(), 0)]);
        let long = [b'x'; MAX_LINE + 5];
        let got = lines(&[&long[..], b"\x7f\r"].concat());
        assert_eq!(got, [("x".repeat(MAX_LINE), 4)]);
    }

    #[test]
    fn escapes_what_is_not_plain_text() {
        assert_eq!(Escaped(b"a \"b\" \\ \x1b[0m\xff").to_string(), r#"a \"b\" \\ \x1b[0m\xff"#);
    }
}
