//! Which backend the arguments name: the only module that knows both. The subcommands get a
//! [`Lock`] from [`open`] and never ask what it is made of.

use std::ffi::OsString;

use crate::cli::LockArgs;
use crate::failure::Failure;
use crate::file_lock::FileLock;
use crate::lock::{Lock, fleet_name};
#[cfg(feature = "postgres")]
use crate::pg_lock::FleetLock;

/// Opens the lock the arguments name. Nothing is locked or created yet. `command` is
/// `pidlock run`'s CMD, whose program name a fleet lock is named after when `--name` is left
/// out.
pub fn open(
    args: &LockArgs,
    keep_file: bool,
    command: &[OsString],
) -> Result<Box<dyn Lock>, Failure> {
    if let Some(conninfo) = &args.postgres {
        let name = fleet_name(args, command).ok_or_else(|| {
            Failure::Usage(
                "say which fleet lock: --name NAME (only `pidlock run` names it after CMD)"
                    .to_owned(),
            )
        })?;
        return open_fleet(conninfo, name);
    }
    match &args.file {
        Some(path) => Ok(Box::new(FileLock::new(path, keep_file))),
        None => Err(Failure::Usage("say which lock: --file PATH".to_owned())),
    }
}

#[cfg(feature = "postgres")]
fn open_fleet(conninfo: &str, name: String) -> Result<Box<dyn Lock>, Failure> {
    Ok(Box::new(FleetLock::new(conninfo, name)))
}

#[cfg(not(feature = "postgres"))]
fn open_fleet(_conninfo: &str, _name: String) -> Result<Box<dyn Lock>, Failure> {
    Err(Failure::Usage(
        "this pidlock was built without PostgreSQL support, so --postgres cannot be used; \
         lock a file with --file PATH"
            .to_owned(),
    ))
}
