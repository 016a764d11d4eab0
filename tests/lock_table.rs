//! Hardening 18, the lock table's side: on Linux, `is_locked()` on a free file answers from the
//! kernel's lock table and never opens the file to probe it. Alone in its test binary: the
//! table is the whole machine's, and the hardening tests fill it to a page and beyond on purpose
//! (a record with 80 waiters, a table kept around a page), which makes probing right.
#![cfg(all(target_os = "linux", not(pidlock_portable)))]

mod common;

use std::fs;

use common::Scratch;
use pidlockfile::PidLockFile;

#[test]
fn h18_is_locked_on_a_free_file_does_not_touch_it() {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let scratch = Scratch::new("h18-untouched");
    let path = scratch.path("app.pid");
    fs::write(&path, "999999\n").unwrap();
    let watcher = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).unwrap();
    inotify::add_watch(&watcher, &path, WatchFlags::OPEN).unwrap();
    let lock = PidLockFile::new(&path);
    let mut buf = [std::mem::MaybeUninit::uninit(); 1024];
    let mut events = inotify::Reader::new(&watcher, &mut buf);
    // The lock table answers only while the kernel can render it in one read (see
    // `sys/linux.rs`); with the machine's other locks filling more than a page, probing is
    // right. So each call is judged by the table it met, and a table that changed and changed
    // back during a call can excuse a few probes, not most.
    // Locks taken and dropped meanwhile make a table that came in two reads, which is not
    // trusted either: calls are judged only when the table was the same, and small, before and
    // after. (In a test binary of its own, so that no other test of this workspace fills the
    // table meanwhile: hardening's fill it to a page and beyond on purpose.)
    let (mut judged, mut probed) = (0, 0);
    for _ in 0..2000 {
        let before = fs::read("/proc/locks").unwrap();
        assert!(!lock.is_locked());
        let opened = events.next().is_ok();
        while events.next().is_ok() {}
        if before.len() < 3000 && fs::read("/proc/locks").unwrap() == before {
            judged += 1;
            probed += usize::from(opened);
        }
        if judged == 20 {
            break;
        }
    }
    assert!(judged > 0, "the machine's lock table never fit in one page");
    assert!(
        probed * 4 <= judged,
        "is_locked() opened the file (to take a probe lock) {probed} times out of {judged}"
    );
}
