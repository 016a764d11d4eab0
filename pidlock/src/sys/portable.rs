//! Platforms without inotify or a readable kernel lock table (macOS, the BSDs): waiting falls back
//! to a bounded backoff, and readers always use the shared-lock probe.

use std::fs::{File, Metadata};
use std::io;
use std::path::Path;
use std::time::Instant;

use super::backoff::Backoff;
use crate::owner::Process;

/// Waits for a lock file's holder to let go, by sleeping in growing steps.
#[derive(Debug)]
pub(crate) struct ReleaseWatch {
    backoff: Backoff,
}

impl ReleaseWatch {
    pub(crate) fn new(_me: Process) -> Self {
        ReleaseWatch {
            backoff: Backoff::new(),
        }
    }

    /// Nothing to arm without a notification mechanism.
    pub(crate) fn arm(&mut self, _file: &File) {}

    /// Returns after a short sleep, or at `deadline`, whichever is first.
    pub(crate) fn wait(&mut self, deadline: Instant) {
        self.backoff.wait(deadline);
    }
}

/// No kernel lock table to read here; the caller falls back to its probe.
pub(crate) fn lock_table(_path: &Path, _meta: &Metadata) -> Option<bool> {
    None
}

/// Nobody waits on close events here: waiters back off and try again.
pub(crate) fn announce_release(_file: &File) {}

/// No unnamed files here: waiters create their successor file when the holder lets go.
pub(crate) fn prepare_spare(_dir: &Path, _pid: u32) -> Option<(File, Metadata)> {
    None
}

/// Never called without a spare; present so that the lock algorithm reads the same everywhere.
pub(crate) fn link_spare(_spare: &File, _path: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
