//! A tiny stderr logger: one line per event, `<time> <LEVEL> <message>`, no dependencies.
//!
//! `STATICLET_LOG=debug` (or `-v` on `run`) shows debug lines; the default is `info`, so the
//! steady state is silent and every state change is one line.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

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
        let line = format!(
            "{} {level} {}\n",
            crate::timefmt::now_rfc3339(),
            record.args()
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
