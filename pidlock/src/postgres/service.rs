//! Connection services (`service=NAME`, or `PGSERVICE`), as libpq reads them: a section
//! `[NAME]` of `key=value` lines in the user's file (`PGSERVICEFILE`, else
//! `~/.pg_service.conf`), else in the system's (`PGSYSCONFDIR/pg_service.conf`, else Debian's
//! `/etc/postgresql-common/pg_service.conf`). The connection string's own keys win over the
//! service's, and the service's over the environment.

use std::fs;
use std::path::{Path, PathBuf};

/// Debian's libpq looks here when `PGSYSCONFDIR` is not set.
const SYSCONFDIR: &str = "/etc/postgresql-common";

/// The `key=value` pairs of the service `name`, from the first file that defines it.
pub(crate) fn lookup(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    let user_file = env("PGSERVICEFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pg_service.conf")));
    let system_file = Path::new(&env("PGSYSCONFDIR").unwrap_or_else(|| SYSCONFDIR.to_owned()))
        .join("pg_service.conf");
    let mut looked = Vec::new();
    for file in user_file.into_iter().chain([system_file]) {
        if let Ok(text) = fs::read_to_string(&file)
            && let Some(pairs) = section(&text, name)?
        {
            return Ok(pairs);
        }
        looked.push(file.display().to_string());
    }
    // The name is not shown: it sits in the connection string beside the password.
    Err(format!(
        "definition of the connection service not found (looked in {})",
        looked.join(", ")
    ))
}

/// The pairs of section `[name]` of a service file, or `None` if it has none.
fn section(text: &str, name: &str) -> Result<Option<Vec<(String, String)>>, String> {
    let mut inside = false;
    let mut found = false;
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            if found {
                break;
            }
            inside = header.strip_suffix(']') == Some(name);
            found = inside;
            continue;
        }
        if !inside {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or("syntax error in the connection service file (a line without \"=\")")?;
        let key = key.trim();
        if key == "service" {
            return Err("nested service specifications are not supported".to_owned());
        }
        pairs.push((key.to_owned(), value.trim().to_owned()));
    }
    Ok(found.then_some(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_s_pairs_and_nothing_else() {
        let text = "# comment\n[other]\nhost=x\n\n[jobs]\nhost = db.internal\nport=6543\n\
                    dbname=jobs\n[after]\nhost=y\n";
        assert_eq!(
            section(text, "jobs").unwrap().unwrap(),
            vec![
                ("host".to_owned(), "db.internal".to_owned()),
                ("port".to_owned(), "6543".to_owned()),
                ("dbname".to_owned(), "jobs".to_owned()),
            ]
        );
        assert_eq!(section(text, "none").unwrap(), None);
        assert!(section("[jobs]\nbroken\n", "jobs").is_err());
    }

    #[test]
    fn the_user_s_file_first_then_the_system_s() {
        let dir = std::env::temp_dir().join(format!("pidlock-service-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let user = dir.join("user.conf");
        fs::write(&user, "[a]\nhost=from-user\n").unwrap();
        fs::write(
            dir.join("pg_service.conf"),
            "[a]\nhost=from-system\n[b]\nhost=sys-b\n",
        )
        .unwrap();
        let env = |var: &str| match var {
            "PGSERVICEFILE" => Some(user.display().to_string()),
            "PGSYSCONFDIR" => Some(dir.display().to_string()),
            _ => None,
        };
        assert_eq!(lookup("a", &env).unwrap()[0].1, "from-user");
        assert_eq!(lookup("b", &env).unwrap()[0].1, "sys-b");
        let missing = lookup("c", &env).unwrap_err();
        assert!(missing.contains("not found"), "{missing}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
