//! The advisory lock key of a name: the one sqlx's `PgAdvisoryLock::new(name)` uses, so that a
//! service on sqlx and a program on pidlockfile that name the same lock exclude each other.
//!
//! HKDF-SHA256 (RFC 5869) over the name's bytes, with no salt and the info string
//! `SQLx (Rust) Postgres advisory lock`; the first 8 bytes of the output, read as a
//! little-endian `i64`, in the single-`bigint` key space.

use ring::hmac;

const INFO: &[u8] = b"SQLx (Rust) Postgres advisory lock";

/// The `bigint` advisory lock key for `name`.
pub(crate) fn key_for(name: &str) -> i64 {
    // Extract: no salt means a salt of HashLen zero bytes (RFC 5869, 2.2).
    let salt = hmac::Key::new(hmac::HMAC_SHA256, &[0; 32]);
    let prk = hmac::sign(&salt, name.as_bytes());
    // Expand: 8 bytes fit in the first block, T(1) = HMAC(PRK, info || 0x01).
    let prk = hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref());
    let mut context = hmac::Context::with_key(&prk);
    context.update(INFO);
    context.update(&[1]);
    let block = context.sign();
    let mut first = [0u8; 8];
    first.copy_from_slice(&block.as_ref()[..8]);
    i64::from_le_bytes(first)
}

/// The key as `pg_locks` shows it: `classid` is the high 32 bits, `objid` the low ones.
pub(crate) fn split(key: i64) -> (u32, u32) {
    let bits = key as u64;
    ((bits >> 32) as u32, bits as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlx_test_vector() {
        assert_eq!(
            key_for("my first Postgres advisory lock!"),
            -5560419505042474287
        );
    }

    #[test]
    fn pg_locks_halves() {
        assert_eq!(split(-1), (u32::MAX, u32::MAX));
        assert_eq!(split(0x0000_0001_0000_0002), (1, 2));
    }
}
