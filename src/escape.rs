//! Text from outside (a fleet's alert names, health bodies, log lines, close reasons, and
//! the names in a scenario) made safe to show: no character in it can move the cursor,
//! clear or retitle the operator's terminal, reorder what is displayed or hide text.
//!
//! The characters escaped ([`is_hidden`]) are the control characters (C0 but for the
//! newline of a multi-line text, DEL, C1), the bidirectional controls (U+061C, U+200E,
//! U+200F, U+202A–U+202E, U+2066–U+2069: the "Trojan Source" characters that make
//! `abc\u{202e}fed` display as `abcdef`), and the invisible ones (zero-width spaces and
//! joiners, U+2028/U+2029 line separators, U+2060–U+206F, the BOM, interlinear annotations,
//! tag characters). Each becomes a visible escape, as Rust writes it: `\n`, `\r`, `\t`,
//! `\x1b` (below U+0080), `\u{202e}` (above). A backslash is kept as it is, so regexes and
//! paths read as written: a fleet can print `\x1b` as four characters, but that only looks
//! like an escape.
//!
//! Where: every line printed on stdout or stderr goes through [`terminal`] (which also
//! masks secrets, see [`crate::redact`]; the `tracing` events through [`TerminalWriter`]),
//! and a report that lays out fields escapes each
//! one with [`line()`] so a newline inside a field cannot forge a line of its own. The JSON
//! files keep text as it came (a journal must say what the fleet sent): serde_json escapes
//! the C0 controls, and [`json`] writes the rest as `\uXXXX` escapes, so `cat
//! summary.json` on a terminal is as safe as `voxsoak report`. The HTML and Markdown
//! reports escape each field with [`line()`] before their own escaping.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal or a report as it is (see the module docs).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// `input` with every hidden character escaped, the newline too: for one field, or a line
/// that must stay one line.
pub fn line(input: &str) -> Cow<'_, str> {
    escape(input, is_hidden)
}

/// `input` with every hidden character escaped but the newline: for a whole multi-line
/// text (a report, an error with its causes) whose fields were already escaped.
pub fn lines(input: &str) -> Cow<'_, str> {
    escape(input, |c| c != '\n' && is_hidden(c))
}

/// What may be printed: secrets masked ([`crate::redact::text`]) and hidden characters
/// escaped but the newline. Every text voxsoak prints passes through it or
/// [`terminal_line`].
pub fn terminal(input: &str) -> Cow<'_, str> {
    masked_then(input, lines)
}

/// As [`terminal`], for what must stay one line (a live line): the newline escaped too.
pub fn terminal_line(input: &str) -> Cow<'_, str> {
    masked_then(input, line)
}

fn masked_then<'a>(input: &'a str, escape: fn(&str) -> Cow<'_, str>) -> Cow<'a, str> {
    match crate::redact::text(input) {
        Cow::Borrowed(text) => escape(text),
        Cow::Owned(text) => Cow::Owned(escape(&text).into_owned()),
    }
}

/// An [`std::io::Write`] that passes each line through [`terminal`] before `inner` (the
/// harness's `tracing` events on stderr). What is left without a newline goes at
/// [`flush`](std::io::Write::flush) or drop.
#[derive(Debug)]
pub struct TerminalWriter<W: std::io::Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: std::io::Write> TerminalWriter<W> {
    pub fn new(inner: W) -> Self {
        TerminalWriter {
            inner,
            pending: Vec::new(),
        }
    }

    fn write_out(&mut self, end: usize) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        self.pending.drain(..end);
        self.inner.write_all(terminal(&text).as_bytes())
    }
}

impl<W: std::io::Write> std::io::Write for TerminalWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(newline) = self.pending.iter().rposition(|&b| b == b'\n') {
            self.write_out(newline + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_out(self.pending.len())?;
        self.inner.flush()
    }
}

impl<W: std::io::Write> Drop for TerminalWriter<W> {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

/// Serialized JSON with the hidden characters serde_json leaves raw (DEL, C1, the bidi and
/// invisible ones) written as `\uXXXX` escapes: the same JSON value, safe to `cat`. Such a
/// character can only stand inside a JSON string, where the escape means the same.
pub fn json(serialized: &str) -> Cow<'_, str> {
    // serde_json escapes C0 in strings itself, so a raw one is layout (the newlines of
    // pretty JSON); the rest is DEL or not ASCII, rare in a journal.
    let raw = |c: char| c >= '\u{7f}' && is_hidden(c);
    let maybe = |b: &u8| *b == 0x7f || !b.is_ascii();
    if !serialized.as_bytes().iter().any(maybe) || !serialized.chars().any(raw) {
        return Cow::Borrowed(serialized);
    }
    let mut out = String::with_capacity(serialized.len() + 16);
    let mut units = [0u16; 2];
    for c in serialized.chars() {
        if raw(c) {
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn escape(input: &str, hidden: impl Fn(char) -> bool) -> Cow<'_, str> {
    let Some(first) = input.find(&hidden) else {
        return Cow::Borrowed(input);
    };
    let mut out = String::with_capacity(input.len() + 8);
    out.push_str(&input[..first]);
    for c in input[first..].chars() {
        if !hidden(c) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\n' => write!(out, "\\n"),
            '\r' => write!(out, "\\r"),
            '\t' => write!(out, "\\t"),
            c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            line("Tts\u{1b}[2J\u{1b}]0;pwned\u{7}Limited"),
            "Tts\\x1b[2J\\x1b]0;pwned\\x07Limited"
        );
        assert_eq!(line("a\nb\r\tc\u{0}\u{7f}"), "a\\nb\\r\\tc\\x00\\x7f");
        assert_eq!(line("C1 \u{9b}31m CSI"), "C1 \\u{9b}31m CSI");
    }

    #[test]
    fn bidi_and_invisible_characters_become_visible_escapes() {
        assert_eq!(line("abc\u{202e}fed"), "abc\\u{202e}fed");
        for (hidden, shown) in [
            ('\u{202a}', "\\u{202a}"),
            ('\u{2066}', "\\u{2066}"),
            ('\u{2069}', "\\u{2069}"),
            ('\u{200e}', "\\u{200e}"),
            ('\u{200f}', "\\u{200f}"),
            ('\u{061c}', "\\u{61c}"),
            ('\u{200b}', "\\u{200b}"),
            ('\u{2028}', "\\u{2028}"),
            ('\u{feff}', "\\u{feff}"),
            ('\u{e0041}', "\\u{e0041}"),
        ] {
            assert_eq!(line(&format!("x{hidden}y")), format!("x{shown}y"));
        }
    }

    #[test]
    fn ordinary_text_is_untouched_and_borrowed() {
        for plain in [
            "",
            "alert TtsRateLimited",
            "réponse naïve — 日本語 🙂",
            "regex \\d+ and C:\\path",
        ] {
            assert!(matches!(line(plain), Cow::Borrowed(_)), "{plain:?}");
        }
    }

    #[test]
    fn lines_keeps_the_newline_only() {
        assert_eq!(lines("one\ntwo\u{1b}[A\r\n"), "one\ntwo\\x1b[A\\r\n");
    }

    #[test]
    fn escaping_twice_changes_nothing_more() {
        let once = line("a\u{1b}b\u{202e}c\n").into_owned();
        assert_eq!(line(&once), once);
    }

    #[test]
    fn terminal_masks_secrets_and_escapes() {
        assert_eq!(
            terminal("POST http://u:secret@h/voice?token=abc123 failed: \u{1b}[31mno\nnext"),
            "POST http://***@h/voice?token=*** failed: \\x1b[31mno\nnext"
        );
    }

    #[test]
    fn terminal_line_escapes_the_newline_too() {
        assert_eq!(
            terminal_line("by alert X\nSLO pass http://u:p@h/"),
            "by alert X\\nSLO pass http://***@h/"
        );
    }

    #[test]
    fn the_terminal_writer_masks_and_escapes_what_passes_through() {
        use std::io::Write as _;
        let mut out = Vec::new();
        {
            let mut writer = TerminalWriter::new(&mut out);
            write!(writer, "WARN failed: http://u:secret@h/?token=abc1").unwrap();
            writeln!(writer, "23 \u{1b}[2J").unwrap();
            write!(writer, "tail \u{202e}").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "WARN failed: http://***@h/?token=*** \\x1b[2J\ntail \\u{202e}",
            "a secret split over two writes is masked whole"
        );
    }

    #[test]
    fn json_escapes_keep_the_value() {
        let value = serde_json::json!({"name": "a\u{1b}b\u{202e}c\u{85}d\u{7f}\u{e0041}\n"});
        for serialized in [
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            let safe = json(&serialized);
            assert!(
                !safe.chars().any(|c| c != '\n' && is_hidden(c)),
                "no raw hidden character: {safe}"
            );
            assert!(safe.contains("\\u202e"), "{safe}");
            assert!(safe.contains("\\udb40\\udc41"), "a surrogate pair: {safe}");
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
            assert_eq!(back, value);
        }
        let plain = serde_json::to_string_pretty(&serde_json::json!({"a": [1, "b"]})).unwrap();
        assert!(matches!(json(&plain), Cow::Borrowed(_)), "layout is kept");
    }
}
