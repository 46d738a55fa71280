//! The URL source's cache on disk: the last good body with its signature, and the version
//! before it, read back at boot (a damaged or tampered newest version falls back to it).

use super::*;

/// Why a cached version of the URL's body cannot be used.
#[derive(Debug, thiserror::Error)]
pub(super) enum CacheError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("it is damaged")]
    Damaged,
    #[error("{0}")]
    Signature(#[from] crate::source::trust::SignatureError),
    #[error("{0}")]
    Body(#[from] super::BodyError),
}

impl UrlSource {
    pub(super) fn cached_meta(&self) -> Option<CacheMeta> {
        let meta: CacheMeta =
            serde_json::from_slice(&std::fs::read(self.cache_dir.join("meta.json")).ok()?).ok()?;
        (meta.url == self.url).then_some(meta)
    }

    /// The pods of the cached last good body, for start-up before the first fetch: the
    /// newest version, or the one before it when the newest is damaged or (with signatures
    /// required) does not verify.
    pub fn cached(&self) -> Option<(Snapshot, CacheMeta)> {
        let newest = self.cached_meta()?;
        let mut candidate = Some(newest.clone());
        while let Some(meta) = candidate {
            match self.cached_version(&meta) {
                Ok(snap) => {
                    if meta.sha256 != newest.sha256 {
                        log::warn!(
                            "manifest URL {}: using the previous cached version, fetched at {}",
                            self.url,
                            meta.fetched_at
                        );
                    }
                    return Some((snap, meta));
                }
                Err(e) => log::warn!(
                    "cached manifest body for {} (fetched at {}) cannot be used: {e}",
                    self.url,
                    meta.fetched_at
                ),
            }
            candidate = meta.previous.map(|p| *p);
        }
        None
    }

    pub(super) fn cached_version(&self, meta: &CacheMeta) -> Result<Snapshot, CacheError> {
        let body = std::fs::read(self.cache_dir.join(format!("body.{}", meta.sha256)))?;
        if sha_hex(&body) != meta.sha256 {
            return Err(CacheError::Damaged);
        }
        if let Some(t) = &self.trust {
            let sig = std::fs::read(self.cache_dir.join(format!("sig.{}", meta.sha256))).ok();
            t.verify(&body, sig.as_deref(), &self.url)?;
        }
        Ok(self.parse(&body)?)
    }

    /// The body goes to `body.<sha256>`, then `meta.json` (naming it) replaces the old one,
    /// then older bodies go. Each write is atomic, and a crash at any point leaves a meta.json
    /// whose body is complete: the old version or the new one, never half of either.
    pub(super) fn save_cache(
        &self,
        body: &[u8],
        sig: Option<&[u8]>,
        meta: &CacheMeta,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.cache_dir)?;
        crate::sys::fsutil::write_atomic(
            &self.cache_dir.join(format!("body.{}", meta.sha256)),
            body,
        )?;
        if let Some(sig) = sig {
            crate::sys::fsutil::write_atomic(
                &self.cache_dir.join(format!("sig.{}", meta.sha256)),
                sig,
            )?;
        }
        let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
        crate::sys::fsutil::write_atomic(&self.cache_dir.join("meta.json"), &json)?;
        // Only the newest version and the one before it stay.
        let keep: Vec<&str> = std::iter::once(meta.sha256.as_str())
            .chain(meta.previous.as_ref().map(|p| p.sha256.as_str()))
            .collect();
        for e in std::fs::read_dir(&self.cache_dir)?.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            let versioned = n.strip_prefix("body.").or_else(|| n.strip_prefix("sig."));
            if versioned.is_some_and(|sha| !keep.contains(&sha)) || n.starts_with(".tmp-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}
