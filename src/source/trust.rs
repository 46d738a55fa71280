//! Signed manifests (opt-in): with public keys pinned in the configuration
//! (`manifestPublicKeys`, `--manifest-public-key`), a manifest is applied only when a detached
//! minisign signature of its exact bytes verifies against one of them.
//!
//! Signatures are minisign's own format and naming (`<file>.minisig` beside a manifest,
//! `<url>.minisig` for the manifest URL), so operators sign with the real `minisign` tool; the
//! keys are never fetched, and several may be pinned at once for key rotation. A manifest that
//! is unsigned, badly signed or signed by an unknown key is refused like any invalid manifest:
//! the pods from its last good version keep running, and the refusal is reported.

use minisign_verify::{PublicKey, Signature};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A signature file is a few hundred bytes; more is not a signature.
pub const MAX_SIGNATURE_BYTES: usize = 4096;

/// The detached signature's name beside a file or a URL.
pub const SUFFIX: &str = ".minisig";

/// Why a manifest's signature does not let it through; each names the `.minisig` file.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("not signed: {0}{SUFFIX} is missing, and manifestPublicKeys requires a signature (sign it with `minisign -Sm`)")]
    Missing(String),
    #[error("{0}{SUFFIX} is not a minisign signature (too large)")]
    TooLarge(String),
    #[error("{what}{SUFFIX} is not a minisign signature: {source}")]
    Malformed {
        what: String,
        source: minisign_verify::Error,
    },
    #[error("{0}{SUFFIX} was made with a key that is not pinned (manifestPublicKeys)")]
    KeyNotPinned(String),
    #[error("the signature {0}{SUFFIX} does not match the manifest (tampered with, or signed before its last change)")]
    Mismatch(String),
    #[error("{0}{SUFFIX} is being written")]
    BeingWritten(String),
    #[error("{what}{SUFFIX}: {source}")]
    Unreadable {
        what: String,
        source: crate::source::read::ReadError,
    },
}

/// Manifests refused for their signature since the agent started (`/metrics`).
static REFUSED: AtomicU64 = AtomicU64::new(0);

pub fn refused_total() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("manifest public key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
}

/// The pinned keys.
#[derive(Debug)]
pub struct Trust {
    keys: Vec<(PathBuf, PublicKey)>,
}

impl Trust {
    /// Loads the pinned key files (minisign's `.pub` format: a comment line, then the key).
    /// No files: no policy (`None`), manifests are applied unsigned as with the kubelet.
    pub fn load(files: &[PathBuf]) -> Result<Option<Trust>, TrustError> {
        if files.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for path in files {
            let fail = |message: String| TrustError::Key {
                path: path.clone(),
                message,
            };
            let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            if text.len() > MAX_SIGNATURE_BYTES {
                return Err(fail("not a minisign public key (too large)".into()));
            }
            let text = String::from_utf8_lossy(&text);
            let key = PublicKey::decode(text.trim_start())
                .or_else(|_| PublicKey::from_base64(text.trim()))
                .map_err(|e| fail(format!("not a minisign public key: {e}")))?;
            keys.push((path.clone(), key));
        }
        Ok(Some(Trust { keys }))
    }

    /// Checks `signature` (the `.minisig` file's bytes) over `body`; names the key that
    /// verified it. `what` names the manifest for the error.
    pub fn verify(
        &self,
        body: &[u8],
        signature: Option<&[u8]>,
        what: &str,
    ) -> Result<&Path, SignatureError> {
        let result = self.check(body, signature, what);
        if result.is_err() {
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn check(
        &self,
        body: &[u8],
        signature: Option<&[u8]>,
        what: &str,
    ) -> Result<&Path, SignatureError> {
        let what = what.to_string();
        let Some(sig) = signature else {
            return Err(SignatureError::Missing(what));
        };
        if sig.len() > MAX_SIGNATURE_BYTES {
            return Err(SignatureError::TooLarge(what));
        }
        let sig = Signature::decode(&String::from_utf8_lossy(sig)).map_err(|source| {
            SignatureError::Malformed {
                what: what.clone(),
                source,
            }
        })?;
        let mut last = None;
        for (path, key) in &self.keys {
            match key.verify(body, &sig, true) {
                Ok(()) => return Ok(path),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(minisign_verify::Error::UnexpectedKeyId) => SignatureError::KeyNotPinned(what),
            _ => SignatureError::Mismatch(what),
        })
    }
}

#[cfg(test)]
mod tests;
