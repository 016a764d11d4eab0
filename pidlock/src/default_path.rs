//! Where a program's lock lives when nobody says: a directory that belongs to the user alone.
//!
//! A lock file at a predictable name in a shared directory such as `/tmp` is a denial of
//! service waiting to happen: any local user can create that name first, and then every start
//! of the program fails with "Permission denied". So on Unix the default lock lives in a
//! per-user directory that this user owns and no one else may enter, checked as tmux checks its
//! socket directory. On Windows the temp dir (`%TEMP%`, under the user's profile) is already
//! the user's own.

#[cfg(unix)]
use std::fs::{self, DirBuilder, Metadata};
#[cfg(unix)]
use std::io;
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
#[cfg(unix)]
use std::path::Path;
use std::path::PathBuf;

use crate::{LockError, PidLockFile};

/// The lock file `#[single_instance]` uses when no `path` is given, for `program`.
///
/// On Unix, `$XDG_RUNTIME_DIR/<program>.pid` when `XDG_RUNTIME_DIR` names a directory that is
/// this user's alone (absolute, owned by this user, mode `0700` as the XDG spec requires: `su`
/// and some images pass on another user's, or `/tmp`), else
/// `<temp dir>/pidlock-<uid>/<program>.pid`, in a directory of mode `0700` that
/// [`PidLockFile::for_program`] creates and checks. A relative `TMPDIR` is not used: it would
/// give every working directory a lock of its own.
///
/// On Windows, `<temp dir>\<program>.pid`: the temp dir (`GetTempPath2W`, usually
/// `%LOCALAPPDATA%\Temp`) is per user.
///
/// This looks at `XDG_RUNTIME_DIR` but creates nothing; use [`PidLockFile::for_program`] to get
/// a lock there.
///
/// ```
/// let path = pidlockfile::default_path("myapp");
/// assert!(path.to_string_lossy().contains("myapp"));
/// assert_eq!(path.extension().unwrap(), "pid");
/// ```
pub fn default_path(program: &str) -> PathBuf {
    let file = format!("{program}.pid");
    #[cfg(unix)]
    let dir = runtime_dir().unwrap_or_else(private_temp_dir);
    #[cfg(windows)]
    let dir = std::env::temp_dir();
    dir.join(file)
}

/// `$XDG_RUNTIME_DIR`, if it is set to an absolute path that is a directory of this user's
/// alone.
#[cfg(unix)]
fn runtime_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .filter(|dir| fs::symlink_metadata(dir).is_ok_and(|meta| refusal(&meta).is_none()))
}

/// `<temp dir>/pidlock-<uid>`: the directory this user's default locks live in when there is no
/// usable `XDG_RUNTIME_DIR` (cron, services, ssh sessions, containers).
#[cfg(unix)]
fn private_temp_dir() -> PathBuf {
    let uid = rustix::process::geteuid().as_raw();
    let temp = std::env::temp_dir();
    let temp = if temp.is_absolute() {
        temp
    } else {
        PathBuf::from("/tmp")
    };
    temp.join(format!("pidlock-{uid}"))
}

impl PidLockFile {
    /// A lock at [`default_path`]`(program)`, the one `#[single_instance]` takes when no `path`
    /// is given. Nothing is locked yet.
    ///
    /// On Unix without `XDG_RUNTIME_DIR`, the per-user directory in the temp dir is created with
    /// mode `0700` if it is missing, and refused with [`LockError::LockFailed`] if it is not a
    /// directory that this user owns and no one else may enter: another user could otherwise
    /// make the program fail to start, or read and replace its lock file. On Windows the temp
    /// dir is the user's own, and nothing is created or checked.
    ///
    /// ```no_run
    /// # let program = format!("pidlock-doc-for-program-{}", std::process::id());
    /// let mut lock = pidlockfile::PidLockFile::for_program(&program)?;
    /// lock.acquire(None)?;
    /// assert_eq!(lock.path(), pidlockfile::default_path(&program));
    /// # Ok::<(), pidlockfile::Error>(())
    /// ```
    pub fn for_program(program: &str) -> Result<PidLockFile, LockError> {
        // The directory is looked at once (an `lstat` of `XDG_RUNTIME_DIR`): this runs at the
        // start of every guarded program.
        #[cfg(unix)]
        let path = match runtime_dir() {
            Some(dir) => dir.join(format!("{program}.pid")),
            None => {
                let dir = private_temp_dir();
                let path = dir.join(format!("{program}.pid"));
                ensure_private_dir(&dir).map_err(|source| LockError::failed(&path, source))?;
                path
            }
        };
        #[cfg(windows)]
        let path = default_path(program);
        Ok(PidLockFile::new(path))
    }
}

/// Creates `dir` with mode `0700` if it is missing, then checks that it is a real directory that
/// this user owns and that no one else can enter.
#[cfg(unix)]
fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    // Look first: at every start but the first the directory is there, and one `lstat` is all
    // it costs (a `mkdir` that fails with EEXIST and then the `lstat` were two).
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {
                    // The umask may have taken bits we need; the directory is ours, so put
                    // them back.
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
                }
                // Someone made it between the look and the mkdir: judged below like any other.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            fs::symlink_metadata(dir)?
        }
        Err(e) => return Err(e),
    };
    match refusal(&meta) {
        None => Ok(()),
        Some(why) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to keep the lock in {}: {why}. Remove it, set XDG_RUNTIME_DIR, or \
                 give the lock an explicit path",
                dir.display()
            ),
        )),
    }
}

/// Why a directory found at the private directory's name cannot be trusted, if it cannot.
#[cfg(unix)]
fn refusal(meta: &Metadata) -> Option<String> {
    let me = rustix::process::geteuid().as_raw();
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Some("it is a symbolic link, not a directory".to_owned());
    }
    if !kind.is_dir() {
        return Some("it is not a directory".to_owned());
    }
    if meta.uid() != me {
        return Some(format!(
            "it is owned by uid {}, not by this user (uid {me}), who may have made it to keep \
             this program from starting",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Some(format!(
            "other users may use it (mode {mode:04o}; it must be 0700)"
        ));
    }
    None
}
