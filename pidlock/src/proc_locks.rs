//! Reading Linux's lock table, `/proc/locks` (and the `lock:` lines of `/proc/PID/fdinfo/N`,
//! which use the same format): the one parser of it in the workspace, shared by the runtime's
//! "is it held?" check and the `pidlock` command's holder lookup.
//!
//! Only granted exclusive `flock`s are of interest: that is what a pidlockfile holder (and
//! `flock(1)`) holds. Waiters (listed with a `->` marker), shared locks and POSIX locks are
//! skipped.

/// A granted exclusive `flock`, as one line of the lock table shows it.
///
/// ```
/// use pidlockfile::proc_locks::ExclusiveFlock;
///
/// let line = "1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF";
/// let lock = ExclusiveFlock::parse(line).expect("an exclusive flock");
/// assert_eq!(lock.pid, 4242);
/// assert_eq!(lock.file, (0xfe, 0x00, 1234));
/// assert_eq!(ExclusiveFlock::parse("2: FLOCK  ADVISORY  READ 4242 fe:00:1234 0 EOF"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExclusiveFlock {
    /// The process that took the lock. A descriptor inherited from it (a child's, after a
    /// `fork`) keeps the lock with this PID, even once that process has died.
    pub pid: u32,
    /// The locked file: its device's major and minor numbers, and its inode.
    pub file: (u32, u32, u64),
}

impl ExclusiveFlock {
    /// Parses one line, such as `1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF`; `None` for
    /// anything but a granted exclusive `flock`.
    pub fn parse(line: &str) -> Option<ExclusiveFlock> {
        let mut fields = line.split_ascii_whitespace().skip(1);
        if fields.next()? != "FLOCK" {
            return None;
        }
        let _mode = fields.next()?;
        if fields.next()? != "WRITE" {
            return None;
        }
        let pid = fields.next()?.parse().ok()?;
        let mut id = fields.next()?.split(':');
        let major = u32::from_str_radix(id.next()?, 16).ok()?;
        let minor = u32::from_str_radix(id.next()?, 16).ok()?;
        let inode = id.next()?.parse().ok()?;
        Some(ExclusiveFlock {
            pid,
            file: (major, minor, inode),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ExclusiveFlock;

    fn file(line: &str) -> Option<(u32, (u32, u32, u64))> {
        ExclusiveFlock::parse(line).map(|lock| (lock.pid, lock.file))
    }

    #[test]
    fn reads_granted_exclusive_flocks_only() {
        assert_eq!(
            file("1: FLOCK  ADVISORY  WRITE 4242 fe:00:10010721 0 EOF"),
            Some((4242, (0xfe, 0, 10_010_721)))
        );
        assert_eq!(
            file("12: FLOCK  ADVISORY  WRITE 7 103:0a:42 0 EOF"),
            Some((7, (0x103, 0x0a, 42)))
        );
        // A waiter blocked behind the holder, a shared lock, a POSIX lock, and garbage.
        assert_eq!(
            file("1: -> FLOCK  ADVISORY  WRITE 4243 fe:00:10010721 0 EOF"),
            None
        );
        assert_eq!(
            file("2: FLOCK  ADVISORY  READ 4244 fe:00:10010721 0 EOF"),
            None
        );
        assert_eq!(
            file("3: POSIX  ADVISORY  WRITE 4245 fe:00:10010721 0 EOF"),
            None
        );
        assert_eq!(file("4: FLOCK ADVISORY WRITE 1 zz:00:1 0 EOF"), None);
        assert_eq!(file(""), None);
    }

    /// Odd and hostile lines (cut short, overlong numbers, other separators) never panic, and
    /// are not read as a granted exclusive flock.
    #[test]
    fn odd_lines_never_panic_and_are_not_locks() {
        let long = "9".repeat(100_000);
        let odd = [
            "".to_owned(),
            ":".to_owned(),
            "1:".to_owned(),
            "1: FLOCK".to_owned(),
            "1: FLOCK ADVISORY".to_owned(),
            "1: FLOCK ADVISORY WRITE".to_owned(),
            "1: FLOCK ADVISORY WRITE 1".to_owned(),
            "1: FLOCK ADVISORY WRITE 1 :".to_owned(),
            "1: FLOCK ADVISORY WRITE 1 ::".to_owned(),
            "1: FLOCK ADVISORY WRITE 1 fe:00:".to_owned(),
            "1: FLOCK ADVISORY WRITE 1 <none>:0 0 EOF".to_owned(),
            "1: FLOCK ADVISORY WRITE -1 fe:00:12 0 EOF".to_owned(),
            "1: FLOCK ADVISORY WRITE 1 ffffffffff:00:12 0 EOF".to_owned(),
            format!("1: FLOCK ADVISORY WRITE {long} fe:00:{long} 0 EOF"),
            "1: FLOCK ADVISORY WRITE 1 f\u{e9}:00:12 0 EOF".to_owned(),
            "1:\u{0}FLOCK\u{0}ADVISORY\u{0}WRITE\u{0}1\u{0}fe:00:12".to_owned(),
            "1: -> FLOCK ADVISORY WRITE 1 fe:00:12 0 EOF".to_owned(),
        ];
        for line in &odd {
            assert_eq!(file(line), None, "{line:?}");
        }
        // Every prefix of a real line, cut at every byte.
        let real = "12: FLOCK  ADVISORY  WRITE 4242 103:0a:10010721 0 EOF";
        for end in 0..real.len() {
            let _ = file(&real[..end]);
        }
        assert_eq!(file(real), Some((4242, (0x103, 0x0a, 10_010_721))));
    }
}
