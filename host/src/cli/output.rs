//! What the CLI writes to the terminal.
//!
//! Text that came from a guest or from a server (log lines, results,
//! error messages, names) is escaped before it is printed, so that it
//! cannot clear the screen, set the window title, move the cursor or
//! forge lines that look like Prism's own; and writing into a closed pipe
//! (`prism job list | head`) ends the command quietly instead of panicking.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{self, Write};

/// Whether `c` must not reach a terminal as it is: the C0 controls but
/// tab (which only advances to the next tab stop), DEL, the C1 controls
/// (U+0080–U+009F: U+009B is a CSI on its own), the line and paragraph
/// separators, and the bidirectional embeddings, overrides and isolates
/// (which reorder what follows them on screen).
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x08'
            | '\n'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// `text` made safe to print on one line of a terminal: every control
/// character (see [`needs_escape`]), newlines included, becomes a visible
/// escape: `\n`, `\r`, `\x1b`, `\u{9b}`, `\u{202e}`. Borrows when there
/// is nothing to escape.
pub fn escape_terminal(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// Like [`escape_terminal`], but keeps newlines: for text meant to span
/// lines (a tenant's policies).
pub(super) fn escape_terminal_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| needs_escape(c) && !(keep_newlines && c == '\n');
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// JSON text made safe to print: the characters [`escape_terminal`]
/// escapes become JSON escapes (`\u009b`), newlines and tabs between
/// values stay. The JSON stays valid and means the same: outside strings
/// JSON has no such characters, and inside them `\uXXXX` is the same
/// character. (serde_json escapes the C0 controls itself, but not DEL,
/// C1 or the bidi controls.)
pub fn escape_json(json: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| needs_escape(c) && c != '\n';
    if !json.contains(unsafe_char) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unsafe_char(c) {
            // Every character escaped is in the Basic Multilingual Plane.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `value` as pretty-printed JSON, safe to print.
pub(super) fn pretty_json(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(escape_json(&serde_json::to_string_pretty(value)?).into_owned())
}

/// The error that ends a command whose reader went away (stdout is a
/// closed pipe): [`super::main`] exits quietly, with success, on it.
#[derive(Debug)]
pub(super) struct OutputClosed;

impl fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for OutputClosed {}

/// Whether `e` is (or was caused by) [`OutputClosed`].
pub(super) fn is_output_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.is::<OutputClosed>())
}

/// Writes `args` to `w` and flushes; a broken pipe becomes
/// [`OutputClosed`], any other failure an error naming `what`.
pub(super) fn write_to(
    w: &mut impl Write,
    what: &str,
    args: fmt::Arguments<'_>,
) -> anyhow::Result<()> {
    match w.write_fmt(args).and_then(|()| w.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot write to {what}"))),
    }
}

/// Writes to stdout (what [`outln!`] and [`out!`] call).
pub(super) fn write_stdout(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    write_to(&mut io::stdout().lock(), "standard output", args)
}

/// Writes to stderr, ignoring failures: diagnostics are not worth
/// stopping (or panicking) for when nobody reads them.
pub(super) fn write_stderr(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in ["", "hello, world", "tab\tseparated", "π ≈ 3.14159 — ok ✓"] {
            assert!(matches!(escape_terminal(text), Cow::Borrowed(t) if t == text));
            assert!(matches!(escape_json(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn escape_sequences_become_visible() {
        // Clear the screen, set the window title, ring the bell.
        assert_eq!(
            escape_terminal("\x1b[2J\x1b]0;pwned\x07done"),
            "\\x1b[2J\\x1b]0;pwned\\x07done"
        );
        assert_eq!(escape_terminal("nul\0del\x7f"), "nul\\x00del\\x7f");
    }

    #[test]
    fn a_carriage_return_or_newline_cannot_forge_a_line() {
        let forged = "innocent\r[main prism] job succeeded\n[main prism] forged";
        let escaped = escape_terminal(forged);
        assert_eq!(
            escaped,
            "innocent\\r[main prism] job succeeded\\n[main prism] forged"
        );
        assert!(!escaped.contains(['\r', '\n']));
        // Multi-line text keeps its newlines, never its carriage returns.
        assert_eq!(escape_terminal_lines("a\r\nb\n"), "a\\r\nb\n");
    }

    #[test]
    fn c1_controls_are_escaped() {
        // U+009B is a CSI on its own for terminals that honour C1.
        assert_eq!(
            escape_terminal("\u{9b}2J\u{85}\u{80}"),
            "\\u{9b}2J\\u{85}\\u{80}"
        );
        // Latin-1 letters just above C1 are not controls.
        assert_eq!(escape_terminal("\u{a0}é"), "\u{a0}é");
    }

    #[test]
    fn bidi_controls_and_separators_are_escaped() {
        assert_eq!(
            escape_terminal("user\u{202e}gnp.exe"),
            "user\\u{202e}gnp.exe"
        );
        assert_eq!(
            escape_terminal("\u{202a}\u{202d}\u{2066}\u{2069}\u{2028}\u{2029}"),
            "\\u{202a}\\u{202d}\\u{2066}\\u{2069}\\u{2028}\\u{2029}"
        );
    }

    #[test]
    fn json_stays_valid_and_means_the_same() {
        let value = serde_json::json!({
            "text": "\x1b[2J\u{9b}31m\u{202e}\x7f\r\n\u{2028}",
            "list": [1, "ok"],
        });
        let printed = pretty_json(&value).unwrap();
        assert!(
            !printed.contains(|c: char| needs_escape(c) && c != '\n'),
            "{printed:?}"
        );
        assert!(printed.contains("\\u009b") && printed.contains("\\u202e"));
        let back: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(back, value);
        // A server's JSON with a raw control inside a string comes out valid.
        assert_eq!(escape_json("\"a\x1bb\""), "\"a\\u001bb\"");
    }

    /// A writer whose reader went away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that fails otherwise (a full disk).
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("no space left on device"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_told_apart_from_other_write_failures() {
        let e = write_to(&mut ClosedPipe, "standard output", format_args!("x\n")).unwrap_err();
        assert!(is_output_closed(&e));
        assert!(is_output_closed(&e.context("printing the job list")));
        let e = write_to(&mut Full, "standard output", format_args!("x\n")).unwrap_err();
        assert!(!is_output_closed(&e));
        assert_eq!(
            format!("{e:#}"),
            "cannot write to standard output: no space left on device"
        );
        let mut buffer = Vec::new();
        write_to(&mut buffer, "a buffer", format_args!("{} {}\n", 1, "two")).unwrap();
        assert_eq!(buffer, b"1 two\n");
    }
}
