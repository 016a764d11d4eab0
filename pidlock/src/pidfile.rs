//! The contents of a PID file: `"<pid>\n"`, written so that readers never see a torn value and read
//! the way FHS asks readers to.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The largest file prefix a reader looks at. A PID file holds a few bytes; a reader must not be
/// made to slurp a huge file that someone left at the path.
const READ_LIMIT: u64 = 4096;

/// Parses the PID at the start of a PID file.
///
/// Accepts what FHS allows writers to produce: surrounding ASCII whitespace, leading zeros, a missing
/// trailing newline, and further lines after the first. Rejects everything that is not a plain
/// decimal number in `1..=i32::MAX` (the range of `pid_t`), so `0x42`, `1e17`, `+4`, `-4` and `0`
/// give `None`.
pub(crate) fn parse(contents: &[u8]) -> Option<u32> {
    let text = contents.trim_ascii_start();
    let first_line = match text.iter().position(|&b| b == b'\n') {
        Some(end) => &text[..end],
        None => text,
    };
    let digits = first_line.trim_ascii_end();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // `u32::from_str` would also accept a leading `+`; the check above already ruled it out.
    let pid: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let max = u32::try_from(i32::MAX).ok()?;
    (1..=max).contains(&pid).then_some(pid)
}

/// Reads and parses the PID file at `path`, without following a symlink and without blocking on a
/// FIFO. Any problem (missing file, not a regular file, unreadable, garbage) gives `None`.
pub(crate) fn read(path: &Path) -> Option<u32> {
    let file = open_for_reading(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut contents = Vec::with_capacity(32);
    file.take(READ_LIMIT).read_to_end(&mut contents).ok()?;
    if contents.len() as u64 == READ_LIMIT && !contents.contains(&b'\n') {
        // The first line did not fit; whatever number it holds is not one we can trust.
        return None;
    }
    parse(&contents)
}

/// Opens `path` for reading only: no symlink is followed and a FIFO does not block the open.
pub(crate) fn open_for_reading(path: &Path) -> io::Result<File> {
    crate::sys::open_for_reading(path)
}

/// Replaces the contents of `file`, which is `old_len` bytes long, with `"<pid>\n"`.
///
/// The new PID is written over the old one and only then is the file cut to length, so a reader at
/// any moment sees the old PID, or the new PID as the first line (possibly followed by the tail of a
/// longer old value on a later line, which readers ignore). It never sees an empty file.
pub(crate) fn write(file: &File, pid: u32, old_len: u64) -> io::Result<()> {
    let text = format!("{pid}\n");
    crate::sys::write_all_at(file, text.as_bytes(), 0)?;
    let len = text.len() as u64;
    // A new file (the common case after an unlinking release) has nothing to cut.
    if old_len > len {
        file.set_len(len)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_what_fhs_allows() {
        assert_eq!(parse(b"4242\n"), Some(4242));
        assert_eq!(parse(b"4242"), Some(4242));
        assert_eq!(parse(b"  4242  \n"), Some(4242));
        assert_eq!(parse(b"\n\t 4242\r\n"), Some(4242));
        assert_eq!(parse(b"0004242\n"), Some(4242));
        assert_eq!(parse(b"4242\nextra line\n"), Some(4242));
        assert_eq!(parse(b"2147483647\n"), Some(2_147_483_647));
    }

    #[test]
    fn rejects_everything_else() {
        for garbage in [
            &b""[..],
            b"\n",
            b"   ",
            b"0",
            b"000\n",
            b"0x42",
            b"1e17",
            b"+4",
            b"-4",
            b"4 2",
            b"42abc",
            b"abc",
            b"2147483648",
            b"99999999999999999999999",
            b"\xff\xfe",
            b"4\x002",
        ] {
            assert_eq!(
                parse(garbage),
                None,
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }
}
