#![deny(warnings)]

use std::fmt::Display;

fn path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-shapes-{name}-{}.pid", std::process::id()))
}

/// Doc comments and other attributes stay, in order.
#[inline]
#[must_use]
#[pidlockfile::single_instance(path = path("generic"))]
#[cfg(unix)]
fn generic<T: Display + Clone, const N: usize>(value: T) -> [String; N] {
    std::array::from_fn(|_| value.to_string())
}

#[pidlockfile::single_instance(path = path("impl-trait"))]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

#[pidlockfile::single_instance(path = path("lifetime"))]
fn first_word(text: &str) -> &str {
    text.split(' ').next().unwrap_or(text)
}

#[pidlockfile::single_instance(path = path("inner-attrs"))]
fn inner_attrs() -> u32 {
    #![allow(unused_variables)]
    let unused = 1;
    2
}

#[allow(dead_code)]
#[pidlockfile::single_instance(path = path("never"))]
fn never() -> ! {
    panic!("never returns")
}

#[pidlockfile::single_instance(path = path("unsafe"))]
unsafe fn unsafe_fn() -> u8 {
    7
}

struct Counter {
    count: u32,
}

impl Counter {
    #[pidlockfile::single_instance(path = path("ref-self"))]
    fn bump(&mut self) -> u32 {
        self.count += 1;
        self.count
    }

    #[pidlockfile::single_instance(path = path("self"))]
    fn into_count(self) -> u32 {
        self.count
    }

    #[pidlockfile::single_instance(path = path("assoc"))]
    fn new() -> Self {
        Counter { count: 0 }
    }
}

trait Job {
    #[pidlockfile::single_instance(path = path("trait-default"))]
    fn run(&self) -> u32 {
        5
    }
}

impl Job for Counter {}

fn main() {
    let [a, b] = generic::<_, 2>(1);
    assert_eq!(a + &b, "11");
    assert_eq!(evens(5).collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(first_word("hello world"), "hello");
    assert_eq!(inner_attrs(), 2);
    // SAFETY: nothing unsafe happens in it.
    assert_eq!(unsafe { unsafe_fn() }, 7);
    let mut counter = Counter::new();
    assert_eq!(counter.bump(), 1);
    assert_eq!(counter.run(), 5);
    assert_eq!(counter.into_count(), 1);
}
