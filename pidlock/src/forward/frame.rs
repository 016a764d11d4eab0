//! The message a second instance sends, and the holder's answer: a small versioned binary frame.
//!
//! ```text
//! message: "PLSI" version:u8 length:u32le body[length]          (length <= MAX_MESSAGE)
//!   body:  pid:u32le  cwd:bytes  count:u32le  count x arg:bytes
//!   bytes: length:u32le then the OS string's bytes (Unix: as is; Windows: UTF-16LE, unpaired
//!          surrogates kept)
//! answer:  "PLSA" version:u8 status:u8 holder_pid:u32le
//! ```
//!
//! Lengths are checked against what is left of the body before anything is allocated, so a
//! lying length can neither panic nor make the holder allocate more than the frame it read.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;

use super::SecondInstance;

/// The largest message body a holder reads: 1 MiB.
pub(crate) const MAX_MESSAGE: usize = 1 << 20;
/// The protocol version this build speaks.
pub(crate) const VERSION: u8 = 1;
const MESSAGE_MAGIC: [u8; 4] = *b"PLSI";
const ANSWER_MAGIC: [u8; 4] = *b"PLSA";
/// Magic, version, body length.
pub(crate) const HEADER_LEN: usize = 9;
/// Magic, version, status, holder's PID.
pub(crate) const ANSWER_LEN: usize = 10;

/// What the holder answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Taken: the handler is called with it.
    Accepted,
    /// Not a pidlockfile message, or a body that does not parse.
    Malformed,
    /// Over [`MAX_MESSAGE`].
    TooLarge,
    /// A protocol version this holder does not speak.
    Unsupported,
    /// Sent by another user.
    OtherUser,
    /// Did not arrive whole within the holder's read deadline.
    TooSlow,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Status::Accepted => 0,
            Status::Malformed => 1,
            Status::TooLarge => 2,
            Status::Unsupported => 3,
            Status::OtherUser => 4,
            Status::TooSlow => 5,
        }
    }

    fn from_code(code: u8) -> Option<Status> {
        Some(match code {
            0 => Status::Accepted,
            1 => Status::Malformed,
            2 => Status::TooLarge,
            3 => Status::Unsupported,
            4 => Status::OtherUser,
            5 => Status::TooSlow,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Accepted => "accepted",
            Status::Malformed => "the running instance could not read the message",
            Status::TooLarge => "the message is over the 1 MiB limit",
            Status::Unsupported => "the running instance speaks another protocol version",
            Status::OtherUser => "the running instance belongs to another user",
            Status::TooSlow => {
                "the message did not arrive whole within the running instance's deadline"
            }
        })
    }
}

/// Why a header or body was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Does not start with the magic: not a pidlockfile message at all.
    Garbage,
    /// Another protocol version.
    Version(u8),
    /// Announces a body over [`MAX_MESSAGE`].
    TooLarge(u64),
    /// A field runs past the end of the body, or bytes are left over.
    Malformed(&'static str),
}

impl FrameError {
    pub(crate) fn status(&self) -> Status {
        match self {
            FrameError::Garbage | FrameError::Malformed(_) => Status::Malformed,
            FrameError::Version(_) => Status::Unsupported,
            FrameError::TooLarge(_) => Status::TooLarge,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Garbage => f.write_str("it does not start like a pidlockfile message"),
            FrameError::Version(v) => write!(
                f,
                "it is protocol version {v}; this holder speaks {VERSION}"
            ),
            FrameError::TooLarge(n) => write!(
                f,
                "it announces {n} bytes, over the {MAX_MESSAGE}-byte limit"
            ),
            FrameError::Malformed(what) => write!(f, "it is malformed: {what}"),
        }
    }
}

/// The whole frame for `message`, or its body's size if that is over the limit.
pub(crate) fn encode(message: &SecondInstance) -> Result<Vec<u8>, usize> {
    let mut body = Vec::new();
    body.extend_from_slice(&message.pid.to_le_bytes());
    put_os(&mut body, message.cwd.as_os_str());
    put_len(&mut body, message.args.len());
    for arg in &message.args {
        put_os(&mut body, arg);
        // Stop early: a caller with a huge argument list learns the limit without us
        // building all of it.
        if body.len() > MAX_MESSAGE {
            return Err(body.len());
        }
    }
    if body.len() > MAX_MESSAGE {
        return Err(body.len());
    }
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&MESSAGE_MAGIC);
    frame.push(VERSION);
    put_len(&mut frame, body.len());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The body length a header announces, once the header is known to be ours.
pub(crate) fn decode_header(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    if header[..4] != MESSAGE_MAGIC {
        return Err(FrameError::Garbage);
    }
    if header[4] != VERSION {
        return Err(FrameError::Version(header[4]));
    }
    let len = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    match usize::try_from(len) {
        Ok(len) if len <= MAX_MESSAGE => Ok(len),
        _ => Err(FrameError::TooLarge(u64::from(len))),
    }
}

/// The message in `body`.
pub(crate) fn decode_body(body: &[u8]) -> Result<SecondInstance, FrameError> {
    let mut reader = Reader { rest: body };
    let pid = reader.u32("the sender's PID")?;
    let cwd = PathBuf::from(reader.os("the working directory")?);
    let count = reader.u32("the argument count")?;
    // Every argument takes at least its 4-byte length: a count that cannot fit is a lie, and
    // must not size an allocation.
    if u64::from(count) * 4 > reader.rest.len() as u64 {
        return Err(FrameError::Malformed(
            "more arguments announced than the body holds",
        ));
    }
    let mut args = Vec::with_capacity(count as usize);
    for _ in 0..count {
        args.push(reader.os("an argument")?);
    }
    if !reader.rest.is_empty() {
        return Err(FrameError::Malformed(
            "bytes left over after the last argument",
        ));
    }
    Ok(SecondInstance { args, cwd, pid })
}

/// The holder's answer.
pub(crate) fn encode_answer(status: Status, holder_pid: u32) -> [u8; ANSWER_LEN] {
    let mut answer = [0; ANSWER_LEN];
    answer[..4].copy_from_slice(&ANSWER_MAGIC);
    answer[4] = VERSION;
    answer[5] = status.code();
    answer[6..].copy_from_slice(&holder_pid.to_le_bytes());
    answer
}

/// The status and holder's PID in an answer, or `None` if it is not one.
pub(crate) fn decode_answer(answer: &[u8; ANSWER_LEN]) -> Option<(Status, u32)> {
    if answer[..4] != ANSWER_MAGIC || answer[4] != VERSION {
        return None;
    }
    let status = Status::from_code(answer[5])?;
    Some((
        status,
        u32::from_le_bytes([answer[6], answer[7], answer[8], answer[9]]),
    ))
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Anything that does not fit in u32 is far over the limit; saturate and let the size
    // check refuse it.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

#[cfg(unix)]
fn put_os(out: &mut Vec<u8>, s: &OsStr) {
    use std::os::unix::ffi::OsStrExt;
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(windows)]
fn put_os(out: &mut Vec<u8>, s: &OsStr) {
    use std::os::windows::ffi::OsStrExt;
    let units: Vec<u16> = s.encode_wide().collect();
    put_len(out, units.len() * 2);
    for unit in units {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], FrameError> {
        if self.rest.len() < n {
            return Err(FrameError::Malformed(what));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn os(&mut self, what: &'static str) -> Result<OsString, FrameError> {
        let len = self.u32(what)? as usize;
        let bytes = self.take(len, what)?;
        os_from_bytes(bytes).ok_or(FrameError::Malformed(what))
    }
}

#[cfg(unix)]
fn os_from_bytes(bytes: &[u8]) -> Option<OsString> {
    use std::os::unix::ffi::OsStrExt;
    Some(OsStr::from_bytes(bytes).to_owned())
}

#[cfg(windows)]
fn os_from_bytes(bytes: &[u8]) -> Option<OsString> {
    use std::os::windows::ffi::OsStringExt;
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Some(OsString::from_wide(&units))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(args: &[&str]) -> SecondInstance {
        SecondInstance {
            args: args.iter().map(OsString::from).collect(),
            cwd: PathBuf::from("/some/where"),
            pid: 4242,
        }
    }

    #[test]
    fn round_trips() {
        for args in [&[][..], &["a.txt", "", "--flag=ü"][..]] {
            let frame = encode(&message(args)).unwrap();
            let header: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
            let len = decode_header(&header).unwrap();
            assert_eq!(len, frame.len() - HEADER_LEN);
            assert_eq!(decode_body(&frame[HEADER_LEN..]).unwrap(), message(args));
        }
    }

    #[cfg(unix)]
    #[test]
    fn keeps_non_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let mut m = message(&[]);
        m.args.push(OsStr::from_bytes(b"\xff\xfe.txt").to_owned());
        let frame = encode(&m).unwrap();
        assert_eq!(decode_body(&frame[HEADER_LEN..]).unwrap(), m);
    }

    #[test]
    fn refuses_what_is_not_a_frame() {
        let frame = encode(&message(&["x"])).unwrap();
        let body = &frame[HEADER_LEN..];
        for cut in 0..body.len() {
            assert!(decode_body(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(decode_body(&longer).is_err());
        assert_eq!(decode_header(b"GET / HTT"), Err(FrameError::Garbage));
        let mut header: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
        header[5..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_header(&header),
            Err(FrameError::TooLarge(_))
        ));
        header[4] = 9;
        assert_eq!(decode_header(&header), Err(FrameError::Version(9)));
        // A count of arguments that cannot fit is refused before any allocation.
        let mut lying = 1u32.to_le_bytes().to_vec();
        lying.extend_from_slice(&0u32.to_le_bytes());
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_body(&lying).is_err());
    }

    #[test]
    fn refuses_over_the_limit() {
        let big = "x".repeat(MAX_MESSAGE);
        assert!(encode(&message(&[&big])).is_err());
    }

    #[test]
    fn answers_round_trip() {
        let a = encode_answer(Status::OtherUser, 7);
        assert_eq!(decode_answer(&a), Some((Status::OtherUser, 7)));
        assert_eq!(decode_answer(&[0; ANSWER_LEN]), None);
    }
}
