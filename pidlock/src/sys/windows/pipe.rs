//! Named pipes, for handing a second instance's arguments to the holder (`forward/windows.rs`):
//! the Win32 calls std does not wrap. A pipe instance is created with a DACL that grants the
//! current user alone, rejects remote clients, and the first instance claims the name
//! (`FILE_FLAG_FIRST_PIPE_INSTANCE`), so that the holder never serves beside a squatter that
//! took the name first. Each end reads the other end's process user from its token and
//! compares it with its own (`EqualSid`): the holder its clients', a sender the server's, since
//! another user may have created the name first (the holder then does not listen).

use std::ffi::OsStr;
use std::io;
use std::iter;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_PIPE_CONNECTED, HANDLE, INVALID_HANDLE_VALUE, LocalFree,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
#[cfg(test)]
use windows_sys::Win32::Security::{
    CreateWellKnownSid, SECURITY_MAX_SID_SIZE, WELL_KNOWN_SID_TYPE,
};
use windows_sys::Win32::Security::{
    EqualSid, GetLengthSid, GetTokenInformation, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
    TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::{FILE_FLAG_FIRST_PIPE_INSTANCE, PIPE_ACCESS_DUPLEX};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, GetNamedPipeClientProcessId, GetNamedPipeServerProcessId,
    PIPE_NOWAIT, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE,
    PIPE_UNLIMITED_INSTANCES, PIPE_WAIT, PeekNamedPipe, SetNamedPipeHandleState, WaitNamedPipeW,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// Each direction's buffer: a message of up to 1 MiB goes through in pieces.
const BUFFER: u32 = 64 * 1024;

fn wide(s: &str) -> Vec<u16> {
    OsStr::new(s).encode_wide().chain(iter::once(0)).collect()
}

/// Takes ownership of a handle a Win32 call returned, or its error.
fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `handle` is a valid handle that the caller's Win32 call just returned to us, and
    // nothing else owns it.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// A security identifier, copied out of whatever held it into a buffer of our own (u64s, so
/// that it is aligned as a SID must be).
pub(crate) struct Sid(Vec<u64>);

impl Sid {
    /// Copies the valid SID at `sid`.
    ///
    /// # Safety
    /// `sid` points to a valid SID, live for the call.
    unsafe fn copy_from(sid: PSID) -> Sid {
        // SAFETY: the caller's promise: `sid` is a valid SID.
        let len = unsafe { GetLengthSid(sid) } as usize;
        let mut buffer = vec![0u64; len.div_ceil(8).max(1)];
        // SAFETY: `sid` is `len` bytes long (its own length, above), `buffer` at least as
        // long, and the two do not overlap.
        unsafe { ptr::copy_nonoverlapping(sid.cast::<u8>(), buffer.as_mut_ptr().cast(), len) };
        Sid(buffer)
    }

    /// The pointer Win32 calls take; valid while `self` lives.
    fn as_psid(&self) -> PSID {
        // Win32 takes a mutable pointer, and only reads through it.
        self.0.as_ptr().cast_mut().cast()
    }

    /// The SID in SDDL's form ("S-1-5-21-...").
    pub(crate) fn to_sddl(&self) -> io::Result<String> {
        let mut text: *mut u16 = ptr::null_mut();
        // SAFETY: `self` holds a valid SID; `text` receives a LocalAlloc'd string freed below.
        if unsafe { ConvertSidToStringSidW(self.as_psid(), &raw mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut n = 0;
        // SAFETY: the string is NUL-terminated; we read up to the NUL, then free it once.
        let string = unsafe {
            while *text.add(n) != 0 {
                n += 1;
            }
            let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
            LocalFree(text.cast());
            s
        };
        Ok(string)
    }

    /// A well-known SID with no domain part, such as LocalSystem's (`WinLocalSystemSid`).
    #[cfg(test)]
    pub(crate) fn well_known(kind: WELL_KNOWN_SID_TYPE) -> io::Result<Sid> {
        let mut buffer = vec![0u64; (SECURITY_MAX_SID_SIZE as usize).div_ceil(8)];
        let mut size = SECURITY_MAX_SID_SIZE;
        // SAFETY: `buffer` is live, aligned and `size` bytes long; `size` is a live local.
        if unsafe {
            CreateWellKnownSid(
                kind,
                ptr::null_mut(),
                buffer.as_mut_ptr().cast(),
                &raw mut size,
            )
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(Sid(buffer))
    }
}

impl PartialEq for Sid {
    /// `EqualSid`: the same revision, authority and sub-authorities, whatever the buffers'
    /// slack.
    fn eq(&self, other: &Sid) -> bool {
        // SAFETY: both hold valid SIDs, live for the call.
        unsafe { EqualSid(self.as_psid(), other.as_psid()) != 0 }
    }
}

/// Whether `sid` is this process's user: the check both ends of a connection make of the
/// other's user. Fails if this process's own user cannot be read.
pub(crate) fn is_current_user(sid: &Sid) -> io::Result<bool> {
    Ok(*sid == current_user()?)
}

/// The user SID of the token `token`.
fn token_user(token: &OwnedHandle) -> io::Result<Sid> {
    let mut len = 0u32;
    // SAFETY: a size query: no buffer, `len` is a live local that receives the size needed.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            ptr::null_mut(),
            0,
            &raw mut len,
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(ERROR_INSUFFICIENT_BUFFER as i32) {
            return Err(e);
        }
    }
    // u64s, so that the buffer is aligned for TOKEN_USER and the SID in it.
    let mut buffer = vec![0u64; (len as usize).div_ceil(8).max(1)];
    let size = u32::try_from(buffer.len() * 8).unwrap_or(u32::MAX);
    // SAFETY: `buffer` is live, aligned, and `size` bytes long.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            buffer.as_mut_ptr().cast(),
            size,
            &raw mut len,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so the buffer starts with a TOKEN_USER whose SID pointer
    // points to a valid SID inside the buffer, which lives until the copy is made.
    Ok(unsafe { Sid::copy_from((*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid) })
}

/// This process's user SID.
pub(crate) fn current_user() -> io::Result<Sid> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the pseudo-handle of this process needs no closing; `token` receives a new
    // handle that `owned` takes.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &raw mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    token_user(&owned(token)?)
}

/// The user SID of the process `pid`.
fn process_user(pid: u32) -> io::Result<Sid> {
    // SAFETY: opening a process by PID; the handle returned is taken by `owned`.
    let process = owned(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })?;
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: `process` is live; `token` receives a new handle that `owned` takes.
    if unsafe { OpenProcessToken(process.as_raw_handle(), TOKEN_QUERY, &raw mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    token_user(&owned(token)?)
}

/// A new instance of the pipe `name`, open to the current user only; `first` claims the name
/// and fails if any instance of it exists already.
pub(crate) fn create_pipe(name: &str, first: bool) -> io::Result<OwnedHandle> {
    // Protected DACL with one entry: generic all to this user.
    let sddl = wide(&format!("D:P(A;;GA;;;{})", current_user()?.to_sddl()?));
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated and live; `descriptor` receives a LocalAlloc'd
    // descriptor that is freed below, after the last use.
    if unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &raw mut descriptor,
            ptr::null_mut(),
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let attributes = SECURITY_ATTRIBUTES {
        nLength: u32::try_from(size_of::<SECURITY_ATTRIBUTES>()).unwrap_or(0),
        lpSecurityDescriptor: descriptor,
        bInheritHandle: 0,
    };
    let flags = if first {
        PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE
    } else {
        PIPE_ACCESS_DUPLEX
    };
    let name = wide(name);
    // SAFETY: `name` is NUL-terminated, `attributes` and the descriptor it points to are live
    // for the call; the handle returned is taken by `owned`.
    let handle = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            flags,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_UNLIMITED_INSTANCES,
            BUFFER,
            BUFFER,
            0,
            &raw const attributes,
        )
    };
    let result = owned(handle);
    // SAFETY: the descriptor was allocated by the conversion above and is no longer used.
    unsafe { LocalFree(descriptor) };
    result
}

/// Waits until a client connects to the pipe instance `pipe`.
pub(crate) fn connect_pipe(pipe: &OwnedHandle) -> io::Result<()> {
    // SAFETY: `pipe` is a live pipe instance handle, opened for synchronous I/O.
    if unsafe { ConnectNamedPipe(pipe.as_raw_handle(), ptr::null_mut()) } != 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // A client that connected between the create and this call.
    if e.raw_os_error() == Some(ERROR_PIPE_CONNECTED as i32) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Switches either end of a pipe to non-blocking reads and writes, which the caller then
/// bounds with its deadline.
pub(crate) fn set_nowait(pipe: &impl AsRawHandle) -> io::Result<()> {
    let mode = PIPE_READMODE_BYTE | PIPE_NOWAIT;
    // SAFETY: `pipe` is a live pipe handle; `mode` is a live local.
    if unsafe {
        SetNamedPipeHandleState(
            pipe.as_raw_handle(),
            &raw const mode,
            ptr::null(),
            ptr::null(),
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How many bytes wait to be read from either end of a connected pipe, without reading them.
/// Fails with `ERROR_BROKEN_PIPE` once the other end has closed and nothing is left to read.
///
/// A read in `PIPE_NOWAIT` mode cannot tell "nothing yet" from "closed": std reads pipes with
/// `NtReadFile` and maps what comes back, and under Wine an empty non-blocking pipe reads as
/// end of file. So a reader asks this first, and reads only what is there.
pub(crate) fn available(pipe: &impl AsRawHandle) -> io::Result<u32> {
    let mut available = 0u32;
    // SAFETY: `pipe` is a live pipe handle; no buffer is passed, `available` is a live local.
    if unsafe {
        PeekNamedPipe(
            pipe.as_raw_handle(),
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            &raw mut available,
            ptr::null_mut(),
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(available)
}

/// Waits up to `timeout` for an instance of the pipe `name` to be free.
pub(crate) fn wait_pipe(name: &str, timeout: Duration) -> bool {
    let name = wide(name);
    let ms = u32::try_from(timeout.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    // SAFETY: `name` is NUL-terminated and live for the call.
    unsafe { WaitNamedPipeW(name.as_ptr(), ms) != 0 }
}

/// Whether the client connected to the server end `pipe` runs as this process's user, and
/// its PID.
pub(crate) fn client_is_current_user(pipe: &impl AsRawHandle) -> io::Result<(bool, u32)> {
    let mut pid = 0u32;
    // SAFETY: `pipe` is a live, connected server end; `pid` is a live local.
    if unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle(), &raw mut pid) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((is_current_user(&process_user(pid)?)?, pid))
}

/// The user the server of the pipe `pipe` (a client's end) runs as, and its PID: pipe names
/// are global, so whoever created the name first is the server, whatever user that is.
pub(crate) fn server_user(pipe: &impl AsRawHandle) -> io::Result<(Sid, u32)> {
    let mut pid = 0u32;
    // SAFETY: `pipe` is a live, connected client end; `pid` is a live local.
    if unsafe { GetNamedPipeServerProcessId(pipe.as_raw_handle(), &raw mut pid) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((process_user(pid)?, pid))
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use windows_sys::Win32::Security::{WinLocalSystemSid, WinWorldSid};

    use super::{Sid, create_pipe, current_user, is_current_user, server_user};

    #[test]
    fn sids_compare_by_value() {
        // Two copies of one SID, in buffers of their own.
        assert!(current_user().unwrap() == current_user().unwrap());
        let system = Sid::well_known(WinLocalSystemSid).unwrap();
        assert!(system == Sid::well_known(WinLocalSystemSid).unwrap());
        assert_eq!(system.to_sddl().unwrap(), "S-1-5-18");
        assert!(system != Sid::well_known(WinWorldSid).unwrap());
        // Another user's SID is not ours.
        assert!(!is_current_user(&system).unwrap());
        assert!(is_current_user(&current_user().unwrap()).unwrap());
    }

    #[test]
    fn a_client_reads_the_user_and_pid_of_the_pipe_server() {
        let name = format!(r"\\.\pipe\pidlock-unit-{}", std::process::id());
        let _server = create_pipe(&name, true).unwrap();
        let client = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&name)
            .unwrap();
        let (sid, pid) = server_user(&client).unwrap();
        assert_eq!(pid, std::process::id());
        assert!(is_current_user(&sid).unwrap());
    }
}
