#![deny(warnings)]
//! `path = lock`, where `lock` is a parameter, borrows it: the body still has it.

use std::path::PathBuf;

#[pidlockfile::single_instance(path = lock)]
fn owned(lock: PathBuf) -> PathBuf {
    assert!(pidlockfile::PidLockFile::new(&lock).is_locked());
    lock
}

#[pidlockfile::single_instance(path = lock)]
fn borrowed(lock: &str) -> &str {
    lock
}

#[pidlockfile::single_instance(path = lock)]
async fn owned_async(lock: String) -> String {
    lock
}

#[pidlockfile::single_instance(path = dir.join("c.pid"))]
fn expression(dir: PathBuf) -> PathBuf {
    dir
}

fn main() {
    let dir = std::env::temp_dir().join(format!("ui-path-param-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.pid");
    assert_eq!(owned(a.clone()), a);
    let b = dir.join("b.pid");
    assert_eq!(borrowed(b.to_str().unwrap()), b.to_str().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let c = dir.join("c2.pid").to_string_lossy().into_owned();
    assert_eq!(runtime.block_on(owned_async(c.clone())), c);
    assert_eq!(expression(dir.clone()), dir);
    std::fs::remove_dir_all(&dir).unwrap();
}
