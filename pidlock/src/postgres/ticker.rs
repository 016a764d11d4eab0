//! The one periodic timer of a held lock's watch.
//!
//! On Linux a `timerfd`, registered with the runtime's I/O driver: the kernel wakes the runtime's
//! thread once per tick, at the tick. tokio's own timer (the portable fallback) keeps a wheel
//! whose coarser levels wake the thread at their slots' boundaries before the deadline itself:
//! measured for issue 15, a 2.5 s sleep woke it three times (about 1.6 s, 0.9 s and a few ms
//! before the tick).

use std::time::Duration;

use tokio::time::Instant;

/// Ticks every `period` from its creation. A tick that comes late is not made up for: the next
/// comes on the schedule (`MissedTickBehavior::Skip`), so every tick falls on
/// `start + n × period`.
pub(crate) struct Ticker {
    start: Instant,
    period: Duration,
    imp: Imp,
}

enum Imp {
    #[cfg(target_os = "linux")]
    TimerFd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
    Interval(tokio::time::Interval),
}

impl Ticker {
    /// Must be called on the runtime that polls it.
    pub(crate) fn new(period: Duration) -> Ticker {
        let start = Instant::now();
        Ticker {
            start,
            period,
            imp: Imp::new(period).unwrap_or_else(|| {
                let mut interval = tokio::time::interval_at(start + period, period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                Imp::Interval(interval)
            }),
        }
    }

    /// Waits for the next tick, and returns when the last one due was due: never later than
    /// now, and never earlier than a period before now.
    pub(crate) async fn tick(&mut self) -> Instant {
        self.imp.wait().await;
        let since = self.start.elapsed().as_nanos() / self.period.as_nanos().max(1);
        let ticks = u32::try_from(since).unwrap_or(u32::MAX);
        self.start + self.period.saturating_mul(ticks)
    }
}

impl Imp {
    #[cfg(target_os = "linux")]
    fn new(period: Duration) -> Option<Imp> {
        use rustix::time::{
            Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
            timerfd_settime,
        };
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )
        .ok()?;
        let every = Timespec {
            tv_sec: i64::try_from(period.as_secs()).ok()?,
            tv_nsec: i64::from(period.subsec_nanos()),
        };
        let spec = Itimerspec {
            it_interval: every,
            it_value: every,
        };
        timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec).ok()?;
        // Deprecated since tokio 1.54 for a `T` whose `as_raw_fd` may name a descriptor it does
        // not own (tokio#8587); its replacement is `unsafe`. An `OwnedFd` owns its descriptor
        // for as long as the registration lives, which is what the unsafe one asks to promise.
        #[allow(deprecated)]
        tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)
            .ok()
            .map(Imp::TimerFd)
    }

    #[cfg(not(target_os = "linux"))]
    fn new(_period: Duration) -> Option<Imp> {
        None
    }

    /// Returns at the next tick, or at once if one passed since the last call.
    async fn wait(&mut self) {
        match self {
            #[cfg(target_os = "linux")]
            Imp::TimerFd(fd) => loop {
                let Ok(mut ready) = fd.readable().await else {
                    // The driver is gone (the runtime shuts down): no tick will come.
                    return std::future::pending().await;
                };
                let mut count = [0u8; 8];
                match ready.try_io(|fd| {
                    rustix::io::read(fd.get_ref(), &mut count).map_err(std::io::Error::from)
                }) {
                    // The count of ticks passed: `tick` works it out from the clock.
                    Ok(Ok(8)) => return,
                    // Not due yet (EAGAIN clears the readiness), or interrupted: wait again.
                    _ => continue,
                }
            },
            Imp::Interval(interval) => {
                interval.tick().await;
            }
        }
    }
}
