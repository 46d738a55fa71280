//! The byte streams under a layer: gzip detection, the diff ID hash, and the budget that
//! bounds what the tar reader buffers between two entries.

use super::MAX_HEADERS;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;

/// Opens a layer blob, decompressing gzip when the magic bytes say so.
pub fn open_layer(path: &Path) -> io::Result<Box<dyn Read>> {
    decompress(io::BufReader::new(fs::File::open(path)?))
}

/// A layer stream, decompressed when it starts with gzip's magic bytes.
pub fn decompress<'a, R: io::BufRead + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    if r.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(r)))
    } else {
        Ok(Box::new(r))
    }
}

/// Hashes what passes through, so the uncompressed layer can be checked against its diff ID.
pub(super) struct HashingReader<R> {
    pub(super) inner: R,
    pub(super) hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Counts what the tar reader consumes between two entries (headers, PAX records, long
/// names: the tar crate buffers these whole) and stops it past [`MAX_HEADERS`].
pub(crate) struct Budget {
    armed: Cell<bool>,
    used: Cell<u64>,
    tripped: Cell<bool>,
}

pub(crate) struct Bounded<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let b = &self.budget;
        if b.armed.get() && b.used.get() > MAX_HEADERS + 4096 {
            b.tripped.set(true);
            return Err(io::Error::other("extended headers too large"));
        }
        let n = self.inner.read(buf)?;
        if b.armed.get() {
            b.used.set(b.used.get() + n as u64);
        }
        Ok(n)
    }
}

impl Budget {
    /// A tar archive over `reader` whose extended headers are bounded by the budget.
    pub(crate) fn archive<R: Read>(reader: R) -> (tar::Archive<Bounded<R>>, Rc<Budget>) {
        let budget = Rc::new(Budget {
            armed: Cell::new(false),
            used: Cell::new(0),
            tripped: Cell::new(false),
        });
        let bounded = Bounded {
            inner: reader,
            budget: budget.clone(),
        };
        (tar::Archive::new(bounded), budget)
    }

    /// The next entry. The previous one must have been read to its end, so that only
    /// headers are read here.
    pub(crate) fn next<'a, R: Read>(
        &self,
        entries: &mut tar::Entries<'a, R>,
    ) -> Option<io::Result<tar::Entry<'a, R>>> {
        self.used.set(0);
        self.armed.set(true);
        let next = entries.next();
        self.armed.set(false);
        match next {
            Some(Err(_)) if self.tripped.get() => Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("extended headers (PAX records, GNU long names) of an entry exceed {MAX_HEADERS} bytes"),
            ))),
            other => other,
        }
    }

    pub(crate) fn tripped(&self) -> bool {
        self.tripped.get()
    }
}
