//! Passwords from a password file (`~/.pgpass`, or `passfile` / `PGPASSFILE`), as libpq reads
//! it: lines of `hostname:port:database:username:password`, where `*` matches anything and `\`
//! escapes `:` and `\`. The first matching line wins. A file that others can read is ignored,
//! as libpq ignores it, because it would leak the passwords.

use std::fs;
use std::path::Path;

/// The password for this connection, if the file has one.
pub(crate) fn lookup(
    file: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    if !private(file) {
        return None;
    }
    let text = fs::read_to_string(file).ok()?;
    // libpq matches a Unix socket's directory as "localhost".
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(fields)
        .filter(|fields| fields.len() == 5)
        .find(|f| {
            let matches = |field: &str, value: &str| field == "*" || field == value;
            matches(&f[0], host)
                && matches(&f[1], &port)
                && matches(&f[2], dbname)
                && matches(&f[3], user)
        })
        .map(|mut f| f.swap_remove(4))
}

fn fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(escaped), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(escaped);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(unix)]
fn private(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(file).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o077 == 0)
}

#[cfg(not(unix))]
fn private(file: &Path) -> bool {
    file.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let dir = std::env::temp_dir().join(format!("pidlock-pgpass-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        fs::write(
            &file,
            "# comment\nother:5432:*:app:nope\ndb\\:1:*:*:app:s\\:e\\\\cret\n*:*:*:*:fallback\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(
            lookup(&file, "db:1", 5432, "x", "app").as_deref(),
            Some("s:e\\cret")
        );
        assert_eq!(
            lookup(&file, "elsewhere", 1, "x", "y").as_deref(),
            Some("fallback")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(lookup(&file, "elsewhere", 1, "x", "y"), None);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
