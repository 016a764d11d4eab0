//! Windows: the lock is an exclusive `LockFileEx` on one byte far beyond the PID text, a waiter
//! with a deadline is queued by the kernel (an overlapped `LockFileEx`), and a file is named by
//! its volume serial number and file index.
//!
//! Windows byte-range locks are mandatory: a lock over the whole file, which is what std's
//! `File::lock` takes, makes a `ReadFile` of the locked bytes through any other handle fail. The lock
//! is therefore taken on the single byte at [`LOCK_OFFSET`], which no PID file ever reaches, so
//! that `type app.pid`, `read_pid()` and other programs still read the PID while it is held.
//! Locking beyond the end of a file is allowed and does not grow it.
//!
//! Every handle is opened with share mode read | write | delete, so that readers and the
//! release's delete never meet a sharing violation caused by pidlockfile itself. Handles are
//! created non-inheritable (no `SECURITY_ATTRIBUTES`), so child processes never keep the lock.

/// Named pipes for second instances (`forward/windows.rs`).
pub(crate) mod pipe;
use std::ffi::OsStr;
use std::fs::{File, Metadata, TryLockError};
use std::io;
use std::mem;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_DELETE_PENDING, ERROR_IO_PENDING, ERROR_LOCK_VIOLATION,
    ERROR_OPERATION_ABORTED, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE, NTSTATUS,
    STATUS_DELETE_PENDING, STATUS_PENDING, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, CreateFileW, DELETE, FILE_ATTRIBUTE_NORMAL,
    FILE_ATTRIBUTE_REPARSE_POINT, FILE_DISPOSITION_FLAG_DELETE,
    FILE_DISPOSITION_FLAG_POSIX_SEMANTICS, FILE_DISPOSITION_INFO, FILE_DISPOSITION_INFO_EX,
    FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_FLAG_OVERLAPPED,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, FileDispositionInfo,
    FileDispositionInfoEx, GetFileInformationByHandle, LOCK_FILE_FLAGS, LOCKFILE_EXCLUSIVE_LOCK,
    LOCKFILE_FAIL_IMMEDIATELY, LockFileEx, OPEN_ALWAYS, OPEN_EXISTING, SetFileInformationByHandle,
    UnlockFileEx, WriteFile,
};
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::{CreateEventW, INFINITE, WaitForSingleObject};

use super::FileId;

/// The offset of the one byte that holds the lock: 2^62, far beyond any PID file (whose
/// contents readers never read past 4 KiB), and still a positive 64-bit offset for servers that
/// map Windows locks onto POSIX `fcntl` locks (Samba).
pub(crate) const LOCK_OFFSET: u64 = 1 << 62;

/// How often a wait that its caller may abandon (an `async fn`'s helper thread) looks at the
/// `cancelled` flag. The lock itself is never polled: the kernel completes the request.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

const SHARE_ALL: u32 = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;

/// `STATUS_PENDING` as `OVERLAPPED::Internal` holds it.
#[allow(clippy::cast_sign_loss)] // STATUS_PENDING is 0x103.
const PENDING: usize = STATUS_PENDING as usize;

/// How long a withdrawn request that the kernel did not know of may take to show that it
/// completed after all (see [`lock_before`]).
const COMPLETION_GRACE_MS: u32 = 100;

// `RtlGetLastNtStatus` tells a file that is being deleted from one we may not open: both fail
// with `ERROR_ACCESS_DENIED`. It is in every ntdll since Windows XP, and in Wine's.
#[link(name = "ntdll.dll", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    fn RtlGetLastNtStatus() -> NTSTATUS;
}

/// Whether the kernel queues lock waiters for us. Windows does. Wine 8 does not: its
/// `NtLockFile` answers a lock that must wait on an overlapped handle with `STATUS_PENDING` and
/// never completes it ("Async I/O lock wait not implemented"). Under Wine, handles are opened
/// synchronously (a blocking `LockFileEx` does wait there) and a wait with a deadline backs off
/// and tries again, as on macOS.
fn kernel_queues_waiters() -> bool {
    static QUEUES: OnceLock<bool> = OnceLock::new();
    *QUEUES.get_or_init(|| !running_on_wine())
}

fn running_on_wine() -> bool {
    let ntdll = wide(OsStr::new("ntdll.dll"));
    // SAFETY: `ntdll` is a NUL-terminated UTF-16 string that lives across the call;
    // GetModuleHandleW keeps no reference to it.
    let module = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
    if module.is_null() {
        return false;
    }
    // SAFETY: `module` is ntdll, which is loaded into every process and never unloaded; the
    // name is a NUL-terminated byte string. The returned pointer is only compared, never called.
    let found = unsafe { GetProcAddress(module, c"wine_get_version".as_ptr().cast()) };
    found.is_some()
}

/// `path` as a NUL-terminated UTF-16 string. A path with an interior NUL cannot name a file,
/// and gets one that `CreateFileW` refuses.
fn wide(path: &OsStr) -> Vec<u16> {
    path.encode_wide().chain(Some(0)).collect()
}

fn wide_path(path: &Path) -> io::Result<Vec<u16>> {
    let wide = wide(path.as_os_str());
    if wide[..wide.len() - 1].contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path contains a NUL character",
        ));
    }
    Ok(wide)
}

/// `CreateFileW` on `path` with every share mode, never following a symlink or junction.
fn open(path: &Path, access: u32, disposition: u32, flags: u32) -> io::Result<File> {
    let wide = wide_path(path)?;
    // SAFETY: `wide` is NUL-terminated and outlives the call; a null SECURITY_ATTRIBUTES gives
    // a handle that children do not inherit; there is no template file.
    let handle = unsafe {
        CreateFileW(
            wide.as_ptr(),
            access,
            SHARE_ALL,
            ptr::null(),
            disposition,
            flags | FILE_FLAG_OPEN_REPARSE_POINT,
            ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(open_error());
    }
    // SAFETY: CreateFileW just returned this handle, and nothing else owns it.
    Ok(File::from(unsafe { OwnedHandle::from_raw_handle(handle) }))
}

/// The error of the failed open that just happened on this thread, with a file that is being
/// deleted told apart from a file we may not open: both are `ERROR_ACCESS_DENIED`, but only the
/// NT status says `STATUS_DELETE_PENDING`.
fn open_error() -> io::Error {
    let err = io::Error::last_os_error();
    // SAFETY: reads the calling thread's last NT status; no arguments, no side effects.
    let status = unsafe { RtlGetLastNtStatus() };
    if err.raw_os_error() == Some(win32(ERROR_ACCESS_DENIED)) && status == STATUS_DELETE_PENDING {
        io::Error::from_raw_os_error(win32(ERROR_DELETE_PENDING))
    } else {
        err
    }
}

/// A Win32 error code as std stores it.
#[allow(clippy::cast_possible_wrap)] // Win32 error codes are below 2^16.
const fn win32(code: u32) -> i32 {
    code as i32
}

/// Whether an open failed because the file at the path is being deleted: the last holder
/// released it with the classic delete (no POSIX semantics), and some handle keeps it until
/// it closes. A release is under way; the caller waits it out.
pub(crate) fn is_delete_pending(err: &io::Error) -> bool {
    err.raw_os_error() == Some(win32(ERROR_DELETE_PENDING))
}

/// Opens (creating if needed) the lock file for locking and writing, without following a
/// symlink or junction and without truncating it. Overlapped where the kernel queues lock
/// waiters, so that a wait can have a deadline.
pub(crate) fn open_for_locking(path: &Path) -> io::Result<File> {
    let overlapped = if kernel_queues_waiters() {
        FILE_FLAG_OVERLAPPED
    } else {
        0
    };
    open(
        path,
        GENERIC_READ | GENERIC_WRITE,
        OPEN_ALWAYS,
        FILE_ATTRIBUTE_NORMAL | overlapped,
    )
}

/// Opens `path` for reading only (synchronously, so std can read it), without following a
/// symlink or junction.
pub(crate) fn open_for_reading(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .share_mode(SHARE_ALL)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

/// An `OVERLAPPED` that addresses the lock byte and signals `event` (or, if null, the file
/// handle) when the request completes. Its status starts as pending, as Windows' own
/// `LockFileEx` sets it: a request that some implementation never completes then reads as
/// unfinished, never as granted.
fn lock_byte(event: HANDLE) -> OVERLAPPED {
    let mut overlapped = OVERLAPPED {
        Internal: PENDING,
        hEvent: event,
        ..OVERLAPPED::default()
    };
    // The casts keep the low and the high half of the offset.
    #[allow(clippy::cast_possible_truncation)]
    {
        overlapped.Anonymous.Anonymous.Offset = LOCK_OFFSET as u32;
        overlapped.Anonymous.Anonymous.OffsetHigh = (LOCK_OFFSET >> 32) as u32;
    }
    overlapped
}

/// A manual-reset event for one overlapped request.
fn new_event() -> io::Result<OwnedHandle> {
    // SAFETY: no security attributes, no name: a fresh unnamed event, not inherited.
    let event = unsafe { CreateEventW(ptr::null(), 1, 0, ptr::null()) };
    if event.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CreateEventW just returned this handle, and nothing else owns it.
    Ok(unsafe { OwnedHandle::from_raw_handle(event) })
}

/// Waits until the request that `overlapped` describes on `file` has completed, and returns its
/// outcome. Until this returns, the kernel may still write to `overlapped`.
fn finish(file: &File, overlapped: &OVERLAPPED) -> io::Result<u32> {
    let mut transferred = 0;
    // SAFETY: `overlapped` is the one given to the request on this same handle, and is still
    // alive; waiting (bWait = TRUE) returns only once the kernel is done with it.
    let done = unsafe {
        GetOverlappedResult(
            file.as_raw_handle(),
            ptr::from_ref(overlapped),
            &raw mut transferred,
            1,
        )
    };
    if done == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(transferred)
    }
}

/// Starts a lock request on the lock byte. `Ok(true)`: granted; `Ok(false)`: pending, and the
/// caller must [`finish`] it (or cancel, then finish) before `overlapped` goes away.
fn request_lock(
    file: &File,
    flags: LOCK_FILE_FLAGS,
    overlapped: &mut OVERLAPPED,
) -> io::Result<bool> {
    // SAFETY: the handle is open for the whole call; `overlapped` outlives the request, because
    // every caller finishes a pending request before dropping it.
    let granted = unsafe {
        LockFileEx(
            file.as_raw_handle(),
            flags,
            0,
            1,
            0,
            ptr::from_mut(overlapped),
        )
    };
    if granted != 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(win32(ERROR_IO_PENDING)) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// One attempt at the lock byte, exclusive or shared, that fails at once if it is taken.
fn try_lock(file: &File, flags: LOCK_FILE_FLAGS) -> Result<(), TryLockError> {
    let mut overlapped = lock_byte(ptr::null_mut());
    let result = match request_lock(file, flags | LOCKFILE_FAIL_IMMEDIATELY, &mut overlapped) {
        Ok(true) => Ok(()),
        // An overlapped handle may report even an immediate answer as pending.
        Ok(false) => finish(file, &overlapped).map(drop),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(win32(ERROR_LOCK_VIOLATION)) => {
            Err(TryLockError::WouldBlock)
        }
        Err(e) => Err(TryLockError::Error(e)),
    }
}

/// One non-blocking attempt at the exclusive lock.
pub(crate) fn try_lock_exclusive(file: &File) -> Result<(), TryLockError> {
    try_lock(file, LOCKFILE_EXCLUSIVE_LOCK)
}

/// One non-blocking attempt at a shared lock, a reader's probe. It conflicts with the holder's
/// exclusive lock only, so readers do not exclude each other.
pub(crate) fn try_lock_shared(file: &File) -> Result<(), TryLockError> {
    try_lock(file, 0)
}

/// Waits for the exclusive lock as long as it takes: the kernel grants it at the release.
pub(crate) fn lock_exclusive(file: &File) -> io::Result<()> {
    let event = new_event()?;
    let mut overlapped = lock_byte(event.as_raw_handle());
    if request_lock(file, LOCKFILE_EXCLUSIVE_LOCK, &mut overlapped)? {
        return Ok(());
    }
    finish(file, &overlapped).map(drop)
}

/// Lets go of this handle's lock on the lock byte.
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    let mut overlapped = lock_byte(ptr::null_mut());
    // SAFETY: the handle is open for the whole call; `overlapped` outlives the request, which
    // is finished below if it did not complete at once.
    let done = unsafe { UnlockFileEx(file.as_raw_handle(), 0, 1, 0, &raw mut overlapped) };
    if done != 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(win32(ERROR_IO_PENDING)) {
        finish(file, &overlapped).map(drop)
    } else {
        Err(err)
    }
}

/// Waits for the exclusive lock in the kernel until `deadline` (`None`: without one), or until
/// `cancelled`: an overlapped `LockFileEx`, withdrawn with `CancelIoEx` when the time is up.
/// `Ok(true)` holds the lock. `None` where the kernel does not queue waiters (Wine): the caller
/// then watches and tries again.
pub(crate) fn wait_in_kernel(
    file: &File,
    deadline: Option<Instant>,
    cancelled: Option<&AtomicBool>,
) -> Option<io::Result<bool>> {
    kernel_queues_waiters().then(|| lock_before(file, deadline, cancelled))
}

fn lock_before(
    file: &File,
    deadline: Option<Instant>,
    cancelled: Option<&AtomicBool>,
) -> io::Result<bool> {
    let event = new_event()?;
    // Boxed, so that it can outlive this call if the kernel never says it is done with it.
    let mut overlapped = Box::new(lock_byte(event.as_raw_handle()));
    if request_lock(file, LOCKFILE_EXCLUSIVE_LOCK, &mut overlapped)? {
        return Ok(true);
    }
    // The request is queued, and the kernel may write to `overlapped` until it completes: every
    // way out below goes through `finish`, or leaves `overlapped` and `event` allocated.
    let abandoned = || cancelled.is_some_and(|c| c.load(Ordering::Acquire));
    let mut failure = None;
    loop {
        let now = Instant::now();
        if abandoned() || deadline.is_some_and(|d| now >= d) {
            break;
        }
        let mut wait = deadline.map(|d| d - now);
        if cancelled.is_some() {
            wait = Some(wait.map_or(CANCEL_CHECK, |w| w.min(CANCEL_CHECK)));
        }
        // SAFETY: `event` is a valid event handle owned by this frame.
        let woke = unsafe { WaitForSingleObject(event.as_raw_handle(), millis(wait)) };
        if woke == WAIT_OBJECT_0 {
            return finish(file, &overlapped).map(|_| true);
        }
        if woke != WAIT_TIMEOUT {
            failure = Some(io::Error::last_os_error());
            break;
        }
    }
    // SAFETY: cancels only the request that `overlapped` describes, on this handle; if it has
    // completed already, nothing happens. `finish` below waits until the kernel is done with it.
    let withdrawn = unsafe { CancelIoEx(file.as_raw_handle(), &raw const *overlapped) } != 0;
    if !withdrawn && !completed(&overlapped) {
        // Nothing to cancel, yet not complete: either it is completing this very moment, or the
        // kernel never queued it (Wine 8, if it was not recognised: its `NtLockFile` reports a
        // wait as pending and forgets it). Never take that for a grant, and never wait forever.
        // SAFETY: `event` is a valid event handle owned by this frame.
        let woke = unsafe { WaitForSingleObject(event.as_raw_handle(), COMPLETION_GRACE_MS) };
        if woke != WAIT_OBJECT_0 {
            // Not granted. Should the kernel write to them after all, they are still there.
            mem::forget(event);
            Box::leak(overlapped);
            return failure.map_or(Ok(false), Err);
        }
    }
    match finish(file, &overlapped) {
        // Granted just as the time ran out: ours, unless the caller has gone away.
        Ok(_) if abandoned() => {
            unlock(file)?;
            Ok(false)
        }
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(win32(ERROR_OPERATION_ABORTED)) => {
            failure.map_or(Ok(false), Err)
        }
        Err(e) => Err(e),
    }
}

/// Whether the request that `overlapped` describes has completed (`HasOverlappedIoCompleted`).
fn completed(overlapped: &OVERLAPPED) -> bool {
    // SAFETY: a valid, aligned field; read volatile because the kernel writes it on completion.
    unsafe { ptr::read_volatile(&raw const overlapped.Internal) != PENDING }
}

/// `wait` in whole milliseconds, rounded up so that a wait never ends before the deadline.
fn millis(wait: Option<Duration>) -> u32 {
    wait.map_or(INFINITE, |wait| {
        u32::try_from(wait.as_nanos().div_ceil(1_000_000))
            .map_or(INFINITE - 1, |ms| ms.min(INFINITE - 1))
    })
}

fn information(file: &File) -> io::Result<BY_HANDLE_FILE_INFORMATION> {
    let mut info = BY_HANDLE_FILE_INFORMATION::default();
    // SAFETY: the handle is open for the whole call, and `info` is a writable struct of the
    // size the call expects.
    let done = unsafe { GetFileInformationByHandle(file.as_raw_handle(), &raw mut info) };
    if done == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(info)
    }
}

fn id_of(info: &BY_HANDLE_FILE_INFORMATION) -> FileId {
    (
        u64::from(info.dwVolumeSerialNumber),
        (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
    )
}

/// The volume serial number and file index of the file `file` has open.
pub(crate) fn identity(file: &File, _meta: &Metadata) -> io::Result<FileId> {
    information(file).map(|info| id_of(&info))
}

/// The volume serial number and file index of the file `path` names (a symlink or junction
/// itself, not its target), or `None` if nothing does, or only a file being deleted.
pub(crate) fn path_identity(path: &Path) -> io::Result<Option<FileId>> {
    // No access rights: asking for attributes needs none, and conflicts with no one.
    match open(path, 0, OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS) {
        Ok(file) => identity(&file, &file.metadata()?).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound || is_delete_pending(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How many names the file has.
pub(crate) fn link_count(file: &File, _meta: &Metadata) -> io::Result<u64> {
    information(file).map(|info| u64::from(info.nNumberOfLinks))
}

/// A symlink, junction or other reparse point at the lock path is opened as itself, and
/// refused here before anything is written.
pub(crate) fn special_file(meta: &Metadata) -> Option<&'static str> {
    (meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0).then_some(
        "it is a symbolic link or another reparse point, and pidlockfile does not follow those",
    )
}

/// Writes all of `buf` at `offset`, on a synchronous or an overlapped handle.
pub(crate) fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    let event = new_event()?;
    while !buf.is_empty() {
        let mut overlapped = OVERLAPPED {
            hEvent: event.as_raw_handle(),
            ..OVERLAPPED::default()
        };
        #[allow(clippy::cast_possible_truncation)] // the low and the high half
        {
            overlapped.Anonymous.Anonymous.Offset = offset as u32;
            overlapped.Anonymous.Anonymous.OffsetHigh = (offset >> 32) as u32;
        }
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let mut written = 0;
        // SAFETY: `buf` holds at least `len` bytes and, like `overlapped`, outlives the request:
        // a pending write is finished below before either goes away.
        let done = unsafe {
            WriteFile(
                file.as_raw_handle(),
                buf.as_ptr(),
                len,
                &raw mut written,
                &raw mut overlapped,
            )
        };
        if done == 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(win32(ERROR_IO_PENDING)) {
                return Err(err);
            }
            written = finish(file, &overlapped)?;
        }
        if written == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        buf = &buf[written as usize..];
        offset += u64::from(written);
    }
    Ok(())
}

/// Removes the locked file's name while the caller still holds the lock. Through a handle of
/// its own, opened for deletion and checked to be `locked`, so that a file put at the path
/// since is never removed. With POSIX semantics (Windows 10 1709 and later, on NTFS) the name is
/// gone at once, even while other handles are open; elsewhere the classic delete leaves the file
/// pending deletion until its last handle closes, and acquirers wait that out.
pub(crate) fn remove_locked_file(path: &Path, locked: FileId) -> io::Result<()> {
    let file = match open(path, DELETE, OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound || is_delete_pending(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    if identity(&file, &file.metadata()?)? != locked {
        return Ok(());
    }
    let posix = FILE_DISPOSITION_INFO_EX {
        Flags: FILE_DISPOSITION_FLAG_DELETE | FILE_DISPOSITION_FLAG_POSIX_SEMANTICS,
    };
    if set_disposition(&file, FileDispositionInfoEx, &posix).is_ok() {
        return Ok(());
    }
    let classic = FILE_DISPOSITION_INFO { DeleteFile: true };
    set_disposition(&file, FileDispositionInfo, &classic)
}

fn set_disposition<T>(file: &File, class: i32, info: &T) -> io::Result<()> {
    let size = u32::try_from(mem::size_of::<T>()).unwrap_or(u32::MAX);
    // SAFETY: `info` points at a live value of the structure `class` names, of `size` bytes;
    // the handle was opened with DELETE access and stays open for the call.
    let done = unsafe {
        SetFileInformationByHandle(
            file.as_raw_handle(),
            class,
            ptr::from_ref(info).cast(),
            size,
        )
    };
    if done == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Windows has no PID namespaces: the PID alone names a process.
pub(crate) fn pid_namespace() -> u64 {
    0
}

/// The calling process's ID. Windows has no `fork`, so a process ID is never shared by a
/// process and a copy of it: the ID alone names the process.
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// Windows has no mode bits: the file gets the ACL that its directory passes on.
pub(crate) fn set_pid_file_mode(_file: &File, _meta: &Metadata) -> io::Result<()> {
    Ok(())
}

/// Windows cannot be asked about a lock without taking part in it: the caller takes a shared
/// lock for an instant.
pub(crate) fn held_elsewhere(_file: &File) -> Option<bool> {
    None
}
