//! Where a held lock file is: fixed when the lock is taken, so that a relative path keeps naming
//! the same file for as long as the lock is held, whatever the process's current directory
//! becomes (a daemon's classic `chdir("/")`).
//!
//! A relative path is taken relative to the current directory at acquisition, and that
//! directory is **held open**: on Linux every later step (the status calls, the release) goes
//! through `/proc/thread-self/fd/N/<name>`, which the kernel resolves through the open
//! directory, so it also survives the directory being renamed or moved while the lock is held.
//! Where that is not available (other systems, no `/proc`), the path is resolved once, to an
//! absolute one, at acquisition: that survives `chdir`, not a rename of a directory on the way.
//!
//! An absolute path is used as given: it names the lock for every process, each time.

use std::io;
use std::path::{Path, PathBuf};

/// The lock file of one acquisition: the path to use for it, and what keeps that path valid.
#[derive(Debug)]
pub(crate) struct Place {
    path: PathBuf,
    /// The directory the path goes through, held open for as long as the lock is held.
    #[cfg(target_os = "linux")]
    _dir: Option<std::os::fd::OwnedFd>,
}

impl Place {
    /// Fixes where `path` is, now: see the module documentation. Fails only where the current
    /// directory cannot be known (it was removed).
    pub(crate) fn fix(path: &Path) -> io::Result<Place> {
        if path.is_absolute() {
            return Ok(Place::given(path.to_owned()));
        }
        // "app.pid/" names a directory, and opening it to create a file fails (`EISDIR`), as
        // for an absolute path: `Path` would drop the slash from the name, so resolve instead
        // (`std::path::absolute` keeps a trailing slash).
        if path
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::is_separator)
        {
            return Ok(Place::given(std::path::absolute(path)?));
        }
        #[cfg(target_os = "linux")]
        if let Some(place) = linux::through_open_directory(path) {
            return Ok(place);
        }
        Ok(Place::given(std::path::absolute(path)?))
    }

    fn given(path: PathBuf) -> Place {
        Place {
            path,
            #[cfg(target_os = "linux")]
            _dir: None,
        }
    }

    /// The path that names the lock file for this acquisition.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    use rustix::fs::{Mode, OFlags, fstat, open};

    use super::Place;

    /// The lock file's name in its directory, opened now (`O_PATH`: no permission beyond search
    /// is needed), as a path through `/proc/thread-self/fd`. `None` if the directory cannot be
    /// opened or `/proc` does not lead to it: the caller resolves the path instead, and the
    /// acquisition reports a missing directory as usual.
    pub(super) fn through_open_directory(path: &Path) -> Option<Place> {
        let name = path.file_name()?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let fd = open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        // `thread-self`, not `self`: `/proc/self/fd` is unreadable once the main thread has
        // exited, and every thread shares the descriptor table.
        let via = PathBuf::from(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()));
        let opened = fstat(&fd).ok()?;
        let seen = std::fs::metadata(&via).ok()?;
        if (seen.dev(), seen.ino()) != (opened.st_dev, opened.st_ino) {
            return None;
        }
        Some(Place {
            path: via.join(name),
            _dir: Some(fd),
        })
    }
}
