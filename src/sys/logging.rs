//! A tiny stderr logger: one line per event, `<time> <LEVEL> <message>`, no dependencies.
//!
//! `STATICLET_LOG=debug` (or `-v` on `run`) shows debug lines; the default is `info`, so the
//! steady state is silent and every state change is one line.
//!
//! Messages carry values taken from input (file names, field paths, parser and server
//! messages). Every message is escaped here, once for all callers, as klog's `%q` would escape
//! a value: a line break or a terminal escape inside a value is written as `\n` or `\u{1b}`,
//! so one log call is always exactly one line and no manifest can forge a record.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

/// Whether `c` must not reach a log line as it is: control characters (line breaks, escape,
/// C1 controls such as NEL and CSI), Unicode line and paragraph separators, and the
/// bidirectional overrides that make a line read differently from what it holds.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

/// `text` with every character of [`must_escape`] written as a Rust/Go escape (`\n`, `\t`,
/// `\u{1b}`); borrowed unchanged when there is none (the usual case).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(must_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if must_escape(c) {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

struct Logger;

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level() && m.target().starts_with("staticlet")
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let message = record.args().to_string();
        let line = format!(
            "{} {level} {}\n",
            crate::sys::timefmt::now_rfc3339(),
            escape(&message)
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init(verbose: bool) {
    let level = match std::env::var("STATICLET_LOG").as_deref() {
        Ok("debug") => LevelFilter::Debug,
        Ok("trace") => LevelFilter::Trace,
        Ok("warn") => LevelFilter::Warn,
        Ok("error") => LevelFilter::Error,
        _ if verbose => LevelFilter::Debug,
        _ => LevelFilter::Info,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn one_message_is_one_line() {
        assert_eq!(escape("plain: ok"), "plain: ok");
        assert_eq!(
            escape("a\n2026-01-01T00:00:00Z INFO  x: started\r\x1b[2J\u{85}\u{2028}\u{202e}é"),
            "a\\n2026-01-01T00:00:00Z INFO  x: started\\r\\u{1b}[2J\\u{85}\\u{2028}\\u{202e}é"
        );
    }
}
