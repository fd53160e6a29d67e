//! Temporary directories removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh directory under the system temp dir, removed (with its
/// contents) on drop, also when the test panics.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A directory named `shardkit-<tag>-<pid>-<n>-<nanos>`: unique per
    /// process and call, so tests running in parallel never share one.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(tag: &str) -> TempDir {
        TempDir::try_new(tag).unwrap_or_else(|e| panic!("create a temp dir for {tag:?}: {e}"))
    }

    /// [`new`](TempDir::new) returning the error instead of panicking.
    pub fn try_new(tag: &str) -> std::io::Result<TempDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "shardkit-{tag}-{}-{n}-{}",
            std::process::id(),
            nanos_now() % 1_000_000_000
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `name` inside the directory as a string, for command-line arguments.
    ///
    /// # Panics
    /// When the path is not UTF-8 (the temp dir's path would have to be).
    pub fn file(&self, name: &str) -> String {
        let p = self.join(name);
        p.to_str()
            .unwrap_or_else(|| panic!("{} is not UTF-8", p.display()))
            .to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub(crate) fn nanos_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_and_removed_on_drop() {
        let a = TempDir::new("testkit");
        let b = TempDir::new("testkit");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.join("f"), b"x").unwrap();
        assert!(a.file("f").ends_with("/f"));
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
    }
}
