//! Container logs in the CRI format the kubelet writes, with rotation by size and count.
//!
//! Each line is `<RFC 3339 nano time> <stdout|stderr> <F|P> <content>`: `F` for a full line,
//! `P` for a piece of a line longer than [`MAX_LINE`]. When the file would pass the size
//! limit it is renamed to `<name>.<timestamp>` and the oldest rotated files beyond the count
//! limit are deleted, so a container that logs as fast as it can keeps the disk bounded.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The kubelet splits lines longer than 16 KiB into partial lines.
pub const MAX_LINE: usize = 16 * 1024;

pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    pending: [Vec<u8>; 2],
}

fn stream_index(stream: &str) -> usize {
    usize::from(stream == "stderr")
}

impl LogWriter {
    /// Opens (creates) the log; an error here fails the container's start, as with the
    /// kubelet, rather than running a container whose output goes nowhere.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> std::io::Result<LogWriter> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max_size,
            max_files: max_files.max(1),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Appends raw output of one stream; complete lines are written at once.
    pub fn write(&mut self, stream: &str, mut data: &[u8]) {
        let i = stream_index(stream);
        while let Some(pos) = data.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.pending[i]);
            line.extend_from_slice(&data[..pos]);
            self.emit_line(stream, &line);
            data = &data[pos + 1..];
        }
        self.pending[i].extend_from_slice(data);
        while self.pending[i].len() >= MAX_LINE {
            let rest = self.pending[i].split_off(MAX_LINE);
            let piece = std::mem::replace(&mut self.pending[i], rest);
            self.emit(stream, "P", &piece);
        }
    }

    /// Writes out what is left of unterminated lines.
    pub fn finish(&mut self) {
        for (i, stream) in ["stdout", "stderr"].iter().enumerate() {
            let rest = std::mem::take(&mut self.pending[i]);
            if !rest.is_empty() {
                self.emit(stream, "F", &rest);
            }
        }
        if let Some(f) = &self.file {
            let _ = f.sync_all();
        }
    }

    fn emit_line(&mut self, stream: &str, line: &[u8]) {
        let mut rest = line;
        while rest.len() > MAX_LINE {
            self.emit(stream, "P", &rest[..MAX_LINE]);
            rest = &rest[MAX_LINE..];
        }
        self.emit(stream, "F", rest);
    }

    fn emit(&mut self, stream: &str, tag: &str, content: &[u8]) {
        let ts = crate::sys::timefmt::rfc3339_nanos(SystemTime::now());
        let mut record = Vec::with_capacity(ts.len() + content.len() + 12);
        record.extend_from_slice(ts.as_bytes());
        record.push(b' ');
        record.extend_from_slice(stream.as_bytes());
        record.push(b' ');
        record.extend_from_slice(tag.as_bytes());
        record.push(b' ');
        record.extend_from_slice(content);
        record.push(b'\n');
        if self.size > 0 && self.size + record.len() as u64 > self.max_size {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(&record).is_ok() {
                self.size += record.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let stamp: String = crate::sys::timefmt::rfc3339_nanos(SystemTime::now())
            .chars()
            .filter(|c| c.is_ascii_digit())
            .collect();
        let rotated = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let _ = fs::rename(&self.path, &rotated);
        prune_rotated(&self.path, self.max_files.saturating_sub(1) as usize);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

/// Rotated files of `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn prune_rotated(path: &Path, keep: usize) {
    let files = rotated_files(path);
    if files.len() > keep {
        for f in &files[..files.len() - keep] {
            let _ = fs::remove_file(f);
        }
    }
}

/// Strips the CRI prefix from a log line: returns (stream, is_partial, content).
pub fn parse_cri_line(line: &str) -> Option<(&str, bool, &str)> {
    let mut parts = line.splitn(4, ' ');
    let _ts = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    Some((stream, tag == "P", parts.next().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "staticlet-log-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_cri_lines_with_partials() {
        let d = dir();
        let p = d.join("0.log");
        let mut w = LogWriter::open(&p, 1 << 20, 5).unwrap();
        w.write("stdout", b"hello\nwor");
        w.write("stderr", b"oops\n");
        w.write("stdout", b"ld\n");
        w.write("stdout", &vec![b'x'; MAX_LINE + 10]);
        w.write("stdout", b"\n");
        w.finish();
        let text = fs::read_to_string(&p).unwrap();
        let lines: Vec<_> = text.lines().map(|l| parse_cri_line(l).unwrap()).collect();
        assert_eq!(lines[0], ("stdout", false, "hello"));
        assert_eq!(lines[1], ("stderr", false, "oops"));
        assert_eq!(lines[2], ("stdout", false, "world"));
        assert!(lines[3].1, "a long line is split into a partial...");
        assert_eq!(lines[3].2.len(), MAX_LINE);
        assert_eq!(lines[4], ("stdout", false, "xxxxxxxxxx"));
        let ts = text.split(' ').next().unwrap();
        assert!(crate::sys::timefmt::parse_rfc3339(ts).is_some(), "{ts}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn rotation_keeps_size_and_count_bounded() {
        let d = dir();
        let p = d.join("0.log");
        let mut w = LogWriter::open(&p, 4096, 3).unwrap();
        for i in 0..2000 {
            w.write(
                "stdout",
                format!("line {i} of a container that logs too much\n").as_bytes(),
            );
        }
        w.finish();
        let files: Vec<_> = fs::read_dir(&d).unwrap().flatten().collect();
        assert_eq!(files.len(), 3, "current + 2 rotated");
        for f in files {
            assert!(f.metadata().unwrap().len() <= 4096);
        }
        assert!(fs::read_to_string(&p).unwrap().contains("line 1999"));
        fs::remove_dir_all(d).unwrap();
    }
}
