//! Readers step aside for an acquirer, which asks through the lock file's access time.
//!
//! Where a reader can learn whether a lock is held only by taking a shared lock for an instant
//! (see `probe.rs`), busy readers on a loaded machine can keep a free lock from an acquirer for
//! good: a reader is now and then preempted while it holds its probe's lock, and with enough
//! of them one is always in the way (measured for issue 15: 8 readers in tight loops, 6 CPU hogs
//! on 2 cores, a zero-timeout `acquire` failed in 7 runs of 40). Riding them out for longer does
//! not help; readers must stop starting new probes while an acquirer waits. So an acquirer that
//! finds only shared locks in the way writes a request into the file's access time, and a reader
//! that sees a fresh one waits for it to go (at most [`STEP_ASIDE`]) before it probes. The probes
//! already under way end when their readers next run, and then nothing is in the way.
//!
//! The request lives in the lock file itself, so it names no other file and can mislead no other
//! lock: a name beside the lock file could be a user's file or another lock's (issue 15's review
//! of an intent file). It only ever delays a reader, never changes an answer: a reader always
//! answers from the lock. A request that is not seen (a file system without sub-second times, an
//! acquirer that may not set the file's times) leaves the probes as they were; one that is left
//! behind (the acquirer died) goes stale within [`FRESH`].
//!
//! The access time is chosen because nothing else in a PID file's life looks at it: `ls -l`
//! shows the modification time, and a mount's `noatime` only stops the implicit updates. Its
//! nanoseconds carry a tag that ordinary clocks hit about once in a million, and the
//! milliseconds of the request; the time is written [`AHEAD`] of the request, so that
//! `relatime` (the default) never replaces it on a `read`: it does so only for an access time
//! no later than the modification or change time, or a day old. On a `strictatime` mount any
//! `read` of the file replaces it, which takes the request away, never changes an answer.
//!
//! An acquirer asks for at most [`ASK_AT_MOST`] while only shared locks are in the way, over all
//! its tries: shared locks still in the way after that are not probes (another program's
//! `flock -s`), and readers need not pay for them. A holder seen in between starts the count
//! again.

use std::fs::{File, FileTimes};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a reader waits at most for a request to go before it probes anyway: a shared lock
/// that is not a probe (`flock -s`) keeps the acquirer from the lock however long readers wait.
pub(crate) const STEP_ASIDE: Duration = Duration::from_millis(250);

/// How long a request counts after it is written. An acquirer writes it again every
/// [`RENEW`] while it rides out shared locks.
const FRESH: Duration = Duration::from_millis(250);

/// How often an acquirer that is still riding out shared locks renews its request.
const RENEW: Duration = Duration::from_millis(100);

/// How long an acquirer asks readers to step aside at most while only shared locks are in the
/// way: long enough for every reader that was probing when it asked to run again and let go,
/// however loaded the machine.
const ASK_AT_MOST: Duration = Duration::from_millis(500);

/// How far ahead of the request the access time is written (see the module's doc).
const AHEAD: Duration = Duration::from_secs(1);

/// The nanoseconds of a request: `BASE + milliseconds * STEP + TAG`. Multiples of 100 ns, so
/// that Windows (whose file times count 100 ns) keeps them exactly.
const BASE: u32 = 770_000_000;
const STEP: u32 = 10_000;
const TAG: u32 = 7_700;

/// An acquirer's request that readers step aside, withdrawn when it is dropped.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    file: &'a File,
    made: Instant,
    written: Instant,
    /// Taken back already (after [`ASK_AT_MOST`]).
    withdrawn: bool,
}

impl<'a> Request<'a> {
    /// Asks readers of `file` to step aside. `first` is when this acquisition first asked since
    /// it last saw a holder (set here if it never did): `None` once it has asked for
    /// [`ASK_AT_MOST`], or if the file's times cannot be set (another user's file); then
    /// readers go on probing, as before.
    pub(crate) fn make(file: &'a File, first: &mut Option<Instant>) -> Option<Self> {
        let made = *first.get_or_insert_with(Instant::now);
        if made.elapsed() >= ASK_AT_MOST {
            return None;
        }
        write(file, request_time(SystemTime::now())).ok()?;
        Some(Request {
            file,
            made,
            written: Instant::now(),
            withdrawn: false,
        })
    }

    /// Keeps the request fresh while the acquirer still waits, and takes it back once it has
    /// asked for [`ASK_AT_MOST`].
    pub(crate) fn renew(&mut self) {
        if self.withdrawn || self.written.elapsed() < RENEW {
            return;
        }
        if self.made.elapsed() >= ASK_AT_MOST {
            self.withdraw();
        } else {
            let _ = write(self.file, request_time(SystemTime::now()));
            self.written = Instant::now();
        }
    }

    /// Takes the request back: the access time becomes now, as a `read` would make it.
    fn withdraw(&mut self) {
        let mut now = SystemTime::now();
        if asked_at(now).is_some() {
            now += Duration::from_nanos(100);
        }
        let _ = write(self.file, now);
        self.withdrawn = true;
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        if !self.withdrawn {
            self.withdraw();
        }
    }
}

/// Waits while an acquirer asks readers of `file` to step aside, for at most [`STEP_ASIDE`].
/// Costs one `fstat` when nobody asks.
pub(crate) fn for_acquirer(file: &File) {
    if !asked(file) {
        return;
    }
    let give_up = Instant::now() + STEP_ASIDE;
    let mut pause = Duration::from_micros(50);
    while Instant::now() < give_up && asked(file) {
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// Whether a fresh request is on `file`.
fn asked(file: &File) -> bool {
    let Some(at) = file
        .metadata()
        .and_then(|meta| meta.accessed())
        .ok()
        .and_then(asked_at)
    else {
        return false;
    };
    // A request from the future (a clock set back) counts only within the same bound.
    match SystemTime::now().duration_since(at) {
        Ok(age) => age <= FRESH,
        Err(ahead) => ahead.duration() <= FRESH,
    }
}

/// Sets only the access time of `file`.
fn write(file: &File, accessed: SystemTime) -> std::io::Result<()> {
    file.set_times(FileTimes::new().set_accessed(accessed))
}

/// The access time that carries a request made at `now`.
fn request_time(now: SystemTime) -> SystemTime {
    let at = now.duration_since(UNIX_EPOCH).unwrap_or_default() + AHEAD;
    UNIX_EPOCH + Duration::new(at.as_secs(), BASE + at.subsec_millis() * STEP + TAG)
}

/// When the request that `accessed` carries was made, if it carries one.
fn asked_at(accessed: SystemTime) -> Option<SystemTime> {
    let at = accessed.duration_since(UNIX_EPOCH).ok()?;
    let tagged = at.subsec_nanos().checked_sub(BASE)?;
    let millis = tagged / STEP;
    if millis >= 1000 || tagged % STEP != TAG {
        return None;
    }
    let made = Duration::from_secs(at.as_secs()) + Duration::from_millis(millis.into());
    UNIX_EPOCH.checked_add(made)?.checked_sub(AHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_time_says_when_it_was_made_to_the_millisecond() {
        let now = UNIX_EPOCH + Duration::new(1_780_000_000, 123_456_789);
        let made = asked_at(request_time(now)).unwrap();
        assert_eq!(made, UNIX_EPOCH + Duration::new(1_780_000_000, 123_000_000));
        assert!(request_time(now) > now);
    }

    #[test]
    fn ordinary_times_carry_no_request() {
        // Multiples of 100 ns: Windows keeps no finer times.
        for nanos in [
            0,
            100,
            770_000_000,
            770_007_600,
            770_017_600,
            770_017_800,
            999_999_900,
        ] {
            assert_eq!(
                asked_at(UNIX_EPOCH + Duration::new(1_780_000_000, nanos)),
                None
            );
        }
        assert!(asked_at(UNIX_EPOCH + Duration::new(1_780_000_000, 770_017_700)).is_some());
    }

    #[test]
    fn a_request_is_seen_until_it_is_withdrawn() {
        let path = std::env::temp_dir().join(format!("pidlock-step-aside-{}", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let modified = file.metadata().unwrap().modified().unwrap();
        assert!(!asked(&file));
        let request = Request::make(&file, &mut None).unwrap();
        let reader = File::open(&path).unwrap();
        let accessed = reader.metadata().unwrap().accessed().unwrap();
        if accessed.duration_since(UNIX_EPOCH).unwrap().subsec_nanos() == 0 {
            // A file system with whole-second times keeps no tag: nothing to see there.
            drop(request);
            std::fs::remove_file(&path).unwrap();
            return;
        }
        assert!(
            asked(&reader),
            "{:?}",
            reader.metadata().unwrap().accessed()
        );
        drop(request);
        assert!(!asked(&reader));
        assert_eq!(file.metadata().unwrap().modified().unwrap(), modified);
        // Asked for long enough since the last holder: no more.
        let long_ago = Instant::now().checked_sub(ASK_AT_MOST);
        if long_ago.is_some() {
            assert!(Request::make(&file, &mut long_ago.clone()).is_none());
        }
        std::fs::remove_file(&path).unwrap();
    }
}
