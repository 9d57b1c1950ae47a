//! [`StoreLock`]: the store-wide lock that keeps `gc` from removing blobs a writer has stored
//! but not yet referenced. Writers (capture, import) share it; `gc` takes it exclusively. Run
//! and read-only verbs never take it. flock(2) locks vanish with the process, so a writer
//! killed with SIGKILL cannot wedge the store.

use std::fs::{File, OpenOptions};

use super::{Store, StoreError};

/// A held store lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Open (creating) a file that exists only to be flock(2)ed.
pub(crate) fn open_lock_file(path: &std::path::Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(StoreError::io("failed to open", path))
}

impl StoreLock {
    fn take(store: &Store, exclusive: bool) -> Result<StoreLock, StoreError> {
        let path = store.root().join("lock");
        let file = open_lock_file(&path)?;
        let r = if exclusive { file.lock() } else { file.lock_shared() };
        r.map_err(StoreError::io("failed to lock", &path))?;
        Ok(StoreLock { _file: file })
    }

    /// Held by writers while they add blobs and commit.
    pub fn shared(store: &Store) -> Result<StoreLock, StoreError> {
        StoreLock::take(store, false)
    }

    /// Held by `gc`: no writer is between its first blob and its commit.
    pub fn exclusive(store: &Store) -> Result<StoreLock, StoreError> {
        StoreLock::take(store, true)
    }
}
