//! The platform-specific parts: how a waiter learns that the lock may have been released, how it
//! prepares its successor file while it waits, and how a reader asks the kernel who holds a lock
//! without touching it.
//!
//! Both are optimisations: the portable fallbacks in [`backoff`] and the shared-lock probe in
//! `probe.rs` are correct everywhere; Linux only makes them faster and quieter.

mod backoff;

// `--cfg pidlock_portable` builds the portable versions on Linux too, so that CI can run the
// whole test suite against them where the tests run.
#[cfg(all(target_os = "linux", not(pidlock_portable)))]
mod linux;
#[cfg(all(target_os = "linux", not(pidlock_portable)))]
pub(crate) use linux::{ReleaseWatch, kernel_reports_holder, link_spare, prepare_spare};

#[cfg(any(not(target_os = "linux"), pidlock_portable))]
mod portable;
#[cfg(any(not(target_os = "linux"), pidlock_portable))]
pub(crate) use portable::{ReleaseWatch, kernel_reports_holder, link_spare, prepare_spare};

use rustix::fs::OFlags;

/// Extra `open(2)` flags for every descriptor pidlock opens on the lock path (std adds
/// `O_CLOEXEC` itself). `O_NOFOLLOW` keeps a planted symlink from redirecting our writes;
/// `O_NONBLOCK` keeps a planted FIFO from hanging the open; on a regular file it changes nothing.
// The flag values are small positive constants, so the cast to `c_int` cannot wrap.
#[allow(clippy::cast_possible_wrap)]
pub(crate) const NOFOLLOW_NONBLOCK: i32 =
    (OFlags::NOFOLLOW.bits() | OFlags::NONBLOCK.bits()) as i32;
