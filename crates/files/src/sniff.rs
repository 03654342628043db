//! What a file is, from its bytes: magic numbers (the `infer` crate) for
//! binary formats, and UTF-8 without control characters for plain text.

/// How many leading bytes [`sniff`] wants (fewer when the file is shorter).
pub const SNIFF_BYTES: usize = 8192;

/// `text/plain`: what a file that no magic number matches is, when it is text.
pub const TEXT_PLAIN: &str = "text/plain";

/// The MIME type of a file starting with `head` (its first
/// [`SNIFF_BYTES`], or all of it): a binary format's by its magic number,
/// else `text/plain` when `head` reads as text, else `None`. Plain text
/// must then be confirmed over the whole file with a [`TextCheck`].
///
/// ```
/// use chat_files::sniff::sniff;
/// assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
/// assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
/// assert_eq!(sniff("h\u{e9}llo\n".as_bytes()), Some("text/plain"));
/// assert_eq!(sniff(b"\0\x01\x02\x03"), None);
/// ```
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if let Some(kind) = infer::get(head) {
        return Some(kind.mime_type());
    }
    let mut check = TextCheck::default();
    // The head may end inside a character: only what follows is judged.
    (check.feed(head) && check.pending.len() < 4).then_some(TEXT_PLAIN)
}

/// Checks, chunk by chunk, that a file is UTF-8 text: no NUL or other
/// control character except tab, line feed, carriage return and form feed.
#[derive(Debug, Default)]
pub struct TextCheck {
    /// The bytes of a character cut at the end of the last chunk.
    pending: Vec<u8>,
}

impl TextCheck {
    /// Reads the next chunk; `false` once the file cannot be text.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut joined;
        let bytes = if self.pending.is_empty() {
            chunk
        } else {
            joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(chunk);
            &joined[..]
        };
        let (valid, rest) = match std::str::from_utf8(bytes) {
            Ok(s) => (s, &[][..]),
            Err(e) if e.error_len().is_none() => {
                let (ok, rest) = bytes.split_at(e.valid_up_to());
                // Checked by from_utf8 up to there.
                (std::str::from_utf8(ok).unwrap_or_default(), rest)
            }
            Err(_) => return false,
        };
        if valid
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
        {
            return false;
        }
        self.pending = rest.to_vec();
        true
    }

    /// Whether the file ended on a whole character.
    pub fn finish(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_split_inside_a_character_is_still_text() {
        let text = "aé€😀b".as_bytes();
        for cut in 0..text.len() {
            let mut check = TextCheck::default();
            assert!(check.feed(&text[..cut]), "{cut}");
            assert!(check.feed(&text[cut..]), "{cut}");
            assert!(check.finish(), "{cut}");
        }
    }

    #[test]
    fn binary_and_truncated_text_are_not_text() {
        let mut check = TextCheck::default();
        assert!(!check.feed(b"abc\0def"));
        let mut check = TextCheck::default();
        assert!(!check.feed(&[0xff, 0xfe]));
        let mut check = TextCheck::default();
        assert!(check.feed(&"é".as_bytes()[..1]));
        assert!(!check.finish());
        assert_eq!(sniff(b"<html><body>x</body></html>"), Some("text/html"));
    }
}
