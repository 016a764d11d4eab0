//! The process-wide record of held fleet locks: one entry per server and key, whatever the
//! connection string called the server.

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
