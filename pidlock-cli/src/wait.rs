//! `pidlock wait`: block until nobody holds the lock, without taking it (a deploy script
//! waiting for the running job to finish).

use crate::backend;
use crate::cli::WaitArgs;
use crate::report;

/// Nobody holds the lock.
const FREE: u8 = 0;
/// The timeout ran out first.
const TIMED_OUT: u8 = 1;
/// An error.
const FAILED: u8 = 4;

/// Runs `pidlock wait` and returns its exit status.
pub fn wait(args: &WaitArgs) -> u8 {
    let lock = match backend::open(&args.lock, false, &[]) {
        Ok(lock) => lock,
        Err(failure) => {
            report(&failure);
            return 2;
        }
    };
    match lock.wait_until_free(args.timeout.and_then(|t| t.0)) {
        Ok(true) => FREE,
        Ok(false) => {
            if let Some(timeout) = args.timeout {
                eprintln!(
                    "pidlock: the {} is still held after {}",
                    lock.location(),
                    timeout.describe()
                );
            }
            TIMED_OUT
        }
        Err(failure) => {
            report(&failure);
            FAILED
        }
    }
}
