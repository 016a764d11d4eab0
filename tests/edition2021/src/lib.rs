//! `#[single_instance]` in an edition-2021 crate: a guarded body drops its tail temporaries in
//! 2021's order (after the body's locals), as the same body does without the attribute, and
//! the lock outlives them all. `tests/single_instance_scopes.rs` checks 2024's order (before
//! the locals) with the same code.

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::future::Future;
    use std::path::PathBuf;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use pidlockfile::PidLockFile;

    fn path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "pidlock-edition2021-{name}-{}.pid",
            std::process::id()
        ))
    }

    thread_local! {
        /// What was dropped, in order, and whether the lock was held then.
        static DROPS: RefCell<Vec<(&'static str, bool)>> = const { RefCell::new(Vec::new()) };
    }

    fn drops() -> Vec<(&'static str, bool)> {
        DROPS.with(|d| d.borrow_mut().drain(..).collect())
    }

    struct Noisy {
        name: &'static str,
        lock: &'static str,
    }

    impl Noisy {
        fn len(&self) -> usize {
            self.name.len()
        }
    }

    impl Drop for Noisy {
        fn drop(&mut self) {
            let held = PidLockFile::new(path(self.lock)).is_locked();
            DROPS.with(|d| d.borrow_mut().push((self.name, held)));
        }
    }

    fn plain() -> usize {
        let _local = Noisy {
            name: "local",
            lock: "sync",
        };
        Noisy {
            name: "temporary",
            lock: "sync",
        }
        .len()
    }

    #[pidlockfile::single_instance(path = path("sync"))]
    fn guarded() -> usize {
        let _local = Noisy {
            name: "local",
            lock: "sync",
        };
        Noisy {
            name: "temporary",
            lock: "sync",
        }
        .len()
    }

    #[pidlockfile::single_instance(path = path("async"))]
    async fn guarded_async() -> usize {
        let _local = Noisy {
            name: "local",
            lock: "async",
        };
        Noisy {
            name: "temporary",
            lock: "async",
        }
        .len()
    }

    /// Runs a future that never waits (the lock is free, the body does not await).
    fn now<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("the future waited"),
        }
    }

    #[test]
    fn tail_temporaries_drop_after_the_locals_as_without_the_attribute() {
        assert_eq!(plain(), 9);
        let unguarded = drops();
        // Edition 2021's order, which 2024 reverses.
        assert_eq!(unguarded, [("local", false), ("temporary", false)]);

        assert_eq!(guarded(), 9);
        assert_eq!(drops(), [("local", true), ("temporary", true)]);
        assert!(!PidLockFile::new(path("sync")).is_locked());

        assert_eq!(now(guarded_async()), 9);
        assert_eq!(drops(), [("local", true), ("temporary", true)]);
        assert!(!PidLockFile::new(path("async")).is_locked());
    }
}
