//! The process-wide record of held fleet locks: one entry per server and key, whatever the
//! connection string called the server.

use super::conninfo::ConnInfo;

/// A device number that no file has, per server and database actually reached (the identity
/// a session reads, see `Session::server_identity`), so that the process-wide record of held
/// locks (`owner.rs`) can tell "this thread already holds this fleet lock" too. Two spellings
/// of one server (`127.0.0.1`, `localhost`, its Unix socket) give one device; two servers
/// behind one name give two.
pub(super) fn registry_device(server_identity: &str) -> u64 {
    // FNV-1a: stable and good enough to keep two servers apart.
    let hash = server_identity
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    hash | (1 << 63)
}

/// The device each spelling of a server (its text and database) last turned out to reach in
/// this process: lets a check that must not do I/O (an async task's, before it hands its wait
/// to a thread) decide for a spelling this process has connected with before.
pub(super) static RESOLVED: std::sync::Mutex<Vec<(String, u64)>> =
    std::sync::Mutex::new(Vec::new());

pub(super) fn spelling(info: &ConnInfo) -> String {
    format!(
        "{}/{}",
        info.server,
        info.config.get_dbname().unwrap_or_default()
    )
}

pub(super) fn remember_resolved(info: &ConnInfo, device: u64) {
    let spelling = spelling(info);
    let mut resolved = RESOLVED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    resolved.retain(|(s, _)| *s != spelling);
    resolved.push((spelling, device));
}

pub(super) fn resolved(info: &ConnInfo) -> Option<u64> {
    let spelling = spelling(info);
    RESOLVED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(s, _)| *s == spelling)
        .map(|(_, device)| *device)
}
