//! Connection strings as libpq and psql read them: a URL (`postgres://user@host:5432/db?...`)
//! or `key=value` pairs, with libpq's environment variables (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGCONNECT_TIMEOUT`, ...) filling
//! in what the string leaves out.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{pgpass, service};

/// Connecting gives up after this long unless `connect_timeout` says otherwise: even
/// `acquire(None)` never hangs on a server that does not answer.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the CAs that vouch for the server come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCert {
    /// A PEM file.
    File(PathBuf),
    /// `sslrootcert=system`: the system's trusted roots, as OpenSSL finds them.
    System,
}

/// A parsed connection string, ready to connect with.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) ssl_mode: SslMode,
    pub(crate) root_cert: Option<RootCert>,
    /// A client certificate and its key (`sslcert`, `sslkey`), for `cert` authentication.
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
    pub(crate) connect_timeout: Duration,
    /// `PostgreSQL at db.internal:5432`, for messages. Never the user or the password.
    pub(crate) server: String,
    /// `options` from the string, which our own session settings are appended to.
    pub(crate) options: Option<String>,
}

/// The keys libpq has that pidlockfile understands, and the environment variable for each.
const KEYS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    // Accepted; only an unencrypted key can be used (see `tls.rs`).
    ("sslpassword", None),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("options", Some("PGOPTIONS")),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("passfile", Some("PGPASSFILE")),
    // Accepted and ignored: the session's `application_name` carries the holder's identity,
    // and pidlockfile sets the keepalives and the user timeout itself (see `session.rs`).
    ("application_name", None),
    ("fallback_application_name", None),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
    // Accepted and ignored, as harmless here: no GSSAPI, no compression, SNI always sent.
    ("gssencmode", Some("PGGSSENCMODE")),
    ("sslcompression", None),
    ("sslsni", None),
    ("sslnegotiation", None),
    ("ssl_min_protocol_version", None),
    ("ssl_max_protocol_version", None),
    ("client_encoding", None),
    ("connect_timeout_ms", None),
];

/// What a server is called in messages when the string cannot even be parsed.
pub(crate) const UNPARSED_SERVER: &str = "PostgreSQL";

/// Parses `conninfo`, taking what it leaves out from `env` (libpq's `PG*` variables).
pub(crate) fn parse(
    conninfo: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ConnInfo, String> {
    let mut given = if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://")
    {
        parse_url(conninfo)?
    } else {
        parse_pairs(conninfo)?
    };
    // A service's keys count as the string's, below the string's own (they go first, and the
    // last occurrence wins), above the environment.
    let named = given
        .iter()
        .rev()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .or_else(|| env("PGSERVICE"))
        .filter(|v| !v.is_empty());
    given.retain(|(k, _)| k != "service");
    if let Some(named) = named {
        let mut from_service = service::lookup(&named, env)?;
        from_service.append(&mut given);
        given = from_service;
    }
    let mut params: Vec<(&'static str, String)> = Vec::new();
    let mut previous: Option<&'static str> = None;
    for (key, value) in given {
        let Some((known, _)) = KEYS.iter().find(|(k, _)| *k == key) else {
            // Never the key's text: in a malformed string it may be part of a password.
            return Err(format!(
                "invalid connection option ({})",
                position(previous)
            ));
        };
        previous = Some(known);
        // The last occurrence wins, as in libpq.
        params.retain(|(k, _)| k != known);
        params.push((known, value));
    }
    let get = |key: &str| -> Option<String> {
        params
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                KEYS.iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, var)| var.and_then(env))
            })
            .filter(|v| !v.is_empty())
    };

    let mut config = tokio_postgres::Config::new();
    let user = get("user")
        .or_else(|| env("USER"))
        .or_else(|| env("LOGNAME"))
        .ok_or("no user name: give `user=` in the connection string or set PGUSER")?;
    config.user(&user);
    config.dbname(get("dbname").unwrap_or_else(|| user.clone()));
    if let Some(password) = get("password") {
        config.password(password);
    }

    let hostaddrs = get("hostaddr");
    let hosts: Vec<String> = match (get("host"), &hostaddrs) {
        (Some(hosts), _) => hosts.split(',').map(str::to_owned).collect(),
        // An address without a name: TCP to that address, as in libpq.
        (None, Some(addrs)) => addrs.split(',').map(|a| a.trim().to_owned()).collect(),
        (None, None) => vec![default_host()],
    };
    let ports: Vec<u16> = match get("port") {
        Some(ports) => ports
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| "invalid port number".to_owned())
            })
            .collect::<Result<_, _>>()?,
        None => vec![5432],
    };
    if ports.len() != 1 && ports.len() != hosts.len() {
        return Err(format!(
            "could not match {} port numbers to {} hosts",
            ports.len(),
            hosts.len()
        ));
    }
    if let Some(addrs) = hostaddrs {
        for addr in addrs.split(',') {
            let ip: IpAddr = addr
                .trim()
                .parse()
                .map_err(|_| "could not parse the network address in hostaddr".to_owned())?;
            config.hostaddr(ip);
        }
    }
    let mut shown = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let port = if ports.len() == 1 { ports[0] } else { ports[i] };
        if host.is_empty() {
            return Err("empty host name in the connection string".to_owned());
        }
        // A path names a Unix socket's directory; on Windows, tokio-postgres takes a path as
        // a host name (and fails to resolve it), as there are no Unix sockets to use.
        #[cfg(unix)]
        if host.starts_with('/') {
            config.host_path(host);
        } else {
            config.host(host);
        }
        #[cfg(not(unix))]
        config.host(host);
        // One port per host: a single port applies to every host, as in libpq.
        config.port(port);
        shown.push(shown_host(host, port));
    }

    let root_cert = get("sslrootcert").map(|path| match path.as_str() {
        "system" => RootCert::System,
        _ => RootCert::File(PathBuf::from(path)),
    });
    let ssl_mode = match get("sslmode").as_deref() {
        // libpq: the system's roots vouch for any server with a public certificate, so the
        // name must be checked too.
        None if root_cert == Some(RootCert::System) => SslMode::VerifyFull,
        Some(weak) if root_cert == Some(RootCert::System) && weak != "verify-full" => {
            return Err(
                "sslrootcert=system needs sslmode=verify-full (a weaker sslmode would trust any \
                 server with a public certificate)"
                    .to_owned(),
            );
        }
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("allow") => SslMode::Allow,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(_) => {
            return Err(
                "invalid sslmode value (expected disable, allow, prefer, require, \
                        verify-ca or verify-full)"
                    .to_owned(),
            );
        }
    };
    // libpq's defaults, used if they exist: ~/.postgresql/postgresql.crt and .key.
    let in_home = |file: &str| {
        env("HOME")
            .map(|home| Path::new(&home).join(".postgresql").join(file))
            .filter(|path| path.is_file())
    };
    let client_cert = match (
        get("sslcert")
            .map(PathBuf::from)
            .or_else(|| in_home("postgresql.crt")),
        get("sslkey")
            .map(PathBuf::from)
            .or_else(|| in_home("postgresql.key")),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(cert), None) => {
            return Err(format!(
                "certificate present, but not private key file (sslcert {}: give sslkey)",
                cert.display()
            ));
        }
        (None, _) => None,
    };

    let connect_timeout = match get("connect_timeout") {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(secs) => match secs.trim().parse::<i64>() {
            // libpq waits forever for 0 or less; pidlockfile never does.
            Ok(secs) if secs <= 0 => DEFAULT_CONNECT_TIMEOUT,
            // libpq's minimum.
            Ok(secs) => Duration::from_secs(secs.unsigned_abs().max(2)),
            Err(_) => {
                return Err(
                    "invalid integer value for connection option \"connect_timeout\"".to_owned(),
                );
            }
        },
    };
    match get("channel_binding").as_deref() {
        None | Some("prefer") => {}
        Some("disable") => {
            config.channel_binding(tokio_postgres::config::ChannelBinding::Disable);
        }
        Some("require") => {
            config.channel_binding(tokio_postgres::config::ChannelBinding::Require);
        }
        Some(_) => {
            return Err(
                "invalid channel_binding value (expected disable, prefer or require)".to_owned(),
            );
        }
    }
    if config.get_password().is_none() {
        let passfile = get("passfile")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")));
        if let Some(passfile) = passfile
            && let Some(password) = pgpass::lookup(
                &passfile,
                &hosts[0],
                ports[0],
                config.get_dbname().unwrap_or_default(),
                &user,
            )
        {
            config.password(password);
        }
    }
    match get("target_session_attrs").as_deref() {
        None | Some("any") => {}
        Some("read-write") => {
            config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
        }
        Some(_) => {
            return Err(
                "invalid target_session_attrs value (expected any or read-write)".to_owned(),
            );
        }
    }

    Ok(ConnInfo {
        config,
        ssl_mode,
        root_cert,
        client_cert,
        connect_timeout,
        server: format!("PostgreSQL at {}", shown.join(",")),
        options: get("options"),
    })
}

/// A host and its port, for messages: `db:5432`, `[::1]:5432`. A host value that no host name,
/// address or socket directory looks like (a space, a quote, `=` or a backslash in it) is the
/// sign of a malformed string whose host swallowed other keys, a password among them
/// (`host='db password=...'`): it is never shown.
fn shown_host(host: &str, port: u16) -> String {
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '=' | '\'' | '"' | '\\'))
    {
        format!("(a host that cannot be shown):{port}")
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Where an unknown key sits, for its error: after which known key, never its own text.
fn position(previous: Option<&str>) -> String {
    match previous {
        Some(previous) => format!("the key after \"{previous}\""),
        None => "the first key".to_owned(),
    }
}

/// A key as parsed, for an error: its text if it is one of libpq's, else a placeholder.
fn shown_key(key: &str) -> &str {
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .map_or("an unknown key", |(k, _)| k)
}

/// libpq's default: the Unix socket directory where Debian's server listens, else `localhost`.
fn default_host() -> String {
    const SOCKET_DIR: &str = "/var/run/postgresql";
    if cfg!(unix) && Path::new(SOCKET_DIR).is_dir() {
        SOCKET_DIR.to_owned()
    } else {
        "localhost".to_owned()
    }
}

/// `key=value key2='quoted value' ...`, as libpq parses it.
fn parse_pairs(conninfo: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            // Never the word itself: `password=abc def` makes the password's second half a key.
            let previous = pairs.last().map(|(k, _): &(String, String)| k.as_str());
            return Err(format!(
                "missing \"=\" in connection info string ({})",
                match previous {
                    Some(previous) =>
                        format!("the word after the value of \"{}\"", shown_key(previous)),
                    None => "the first word".to_owned(),
                }
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(
                            "unterminated quoted string in connection info string".to_owned()
                        );
                    }
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(
                                "unterminated quoted string in connection info string".to_owned()
                            );
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// `postgres[ql]://[user[:password]@][host][:port][,host[:port]...][/dbname][?key=value&...]`.
fn parse_url(url: &str) -> Result<Vec<(String, String)>, String> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or("the URL must start with postgres:// or postgresql://")?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, dbname) = match rest.split_once('/') {
        Some((authority, dbname)) => (authority, Some(dbname)),
        None => (rest, None),
    };
    // `postgres://user:pa/ss@host/db`: an unencoded `/` in the password cuts the URL there, and
    // the password would be read as a host and port. Refuse, and never show the text.
    if !authority.contains('@') && dbname.is_some_and(|d| d.contains('@')) {
        return Err(
            "malformed URL: an \"@\" after the host part (percent-encode \"/\", \"?\", \
                    \"@\" and \":\" in a user name or password)"
                .to_owned(),
        );
    }
    let mut pairs = Vec::new();
    let hosts = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_owned(), decode(user)?));
            }
            if let Some(password) = password {
                pairs.push(("password".to_owned(), decode(password)?));
            }
            hosts
        }
        None => authority,
    };
    if !hosts.is_empty() {
        let mut names = Vec::new();
        let mut ports = Vec::new();
        for spec in hosts.split(',') {
            let (host, port) = split_host_port(spec)?;
            names.push(decode(host)?);
            ports.push(port.map(str::to_owned));
        }
        if names.iter().any(|n| !n.is_empty()) {
            pairs.push(("host".to_owned(), names.join(",")));
        }
        if ports.iter().any(Option::is_some) {
            let ports: Vec<String> = ports
                .into_iter()
                .map(|p| p.unwrap_or_else(|| "5432".to_owned()))
                .collect();
            pairs.push(("port".to_owned(), ports.join(",")));
        }
    }
    if let Some(dbname) = dbname.filter(|d| !d.is_empty()) {
        pairs.push(("dbname".to_owned(), decode(dbname)?));
    }
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        if param.is_empty() {
            continue;
        }
        // Never the text itself: a password with an unencoded `?` or `@` lands here.
        let (key, value) = param
            .split_once('=')
            .ok_or("invalid URI query parameter (expected key=value; percent-encode `?`, `@`, `/` and `:` in a password)")?;
        let key = match decode(key)?.as_str() {
            // libpq's aliases for the server's own parameter names.
            "ssl" if value == "true" => ("sslmode".to_owned(), "require".to_owned()),
            key => (key.to_owned(), decode(value)?),
        };
        pairs.push(key);
    }
    Ok(pairs)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(spec: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = spec.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or("missing \"]\" in IPv6 host address in URI")?;
        return match after {
            "" => Ok((host, None)),
            port => port
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| "unexpected text after IPv6 host address in URI".to_owned()),
        };
    }
    Ok(match spec.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (spec, None),
    })
}

/// Percent-decoding, as in a URL.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("invalid percent-encoding in the URL")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "invalid percent-encoding in the URL (not UTF-8)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::Host;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_url_gives_every_part() {
        let info = parse(
            "postgres://alice:s%40cret@db.internal:6543/reports?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3",
            &no_env,
        )
        .unwrap();
        assert_eq!(info.config.get_user(), Some("alice"));
        assert_eq!(info.config.get_password(), Some(&b"s@cret"[..]));
        assert_eq!(info.config.get_dbname(), Some("reports"));
        assert_eq!(
            info.config.get_hosts(),
            &[Host::Tcp("db.internal".to_owned())]
        );
        assert_eq!(info.config.get_ports(), &[6543]);
        assert_eq!(info.ssl_mode, SslMode::VerifyFull);
        assert_eq!(
            info.root_cert,
            Some(RootCert::File(PathBuf::from("/etc/ca.pem")))
        );
        assert_eq!(info.connect_timeout, Duration::from_secs(3));
        assert_eq!(info.server, "PostgreSQL at db.internal:6543");
    }

    #[test]
    fn pairs_quote_and_escape_as_libpq_does() {
        let info = parse(
            "host=/tmp/sock port = 5433 user=bob password='it''s' dbname='my db' options='-c a=\\'b\\''",
            &no_env,
        );
        // libpq has no '' escape inside quotes: the second quote ends the value.
        assert!(info.is_err());
        let info = parse(
            "host=/tmp/sock port = 5433 user=bob password='it\\'s' dbname='my db'",
            &no_env,
        )
        .unwrap();
        assert_eq!(info.config.get_password(), Some(&b"it's"[..]));
        assert_eq!(info.config.get_dbname(), Some("my db"));
        #[cfg(unix)]
        assert_eq!(info.config.get_hosts(), &[Host::Unix("/tmp/sock".into())]);
        assert_eq!(info.server, "PostgreSQL at /tmp/sock:5433");
    }

    #[test]
    fn the_environment_fills_in_what_the_string_leaves_out() {
        let env = |var: &str| match var {
            "PGHOST" => Some("10.1.2.3".to_owned()),
            "PGPORT" => Some("6000".to_owned()),
            "PGUSER" => Some("carol".to_owned()),
            "PGPASSWORD" => Some("pw".to_owned()),
            "PGSSLMODE" => Some("disable".to_owned()),
            "PGCONNECT_TIMEOUT" => Some("0".to_owned()),
            _ => None,
        };
        let info = parse("dbname=jobs", &env).unwrap();
        assert_eq!(info.config.get_user(), Some("carol"));
        assert_eq!(info.config.get_dbname(), Some("jobs"));
        assert_eq!(info.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(info.ssl_mode, SslMode::Disable);
        assert_eq!(info.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(info.server, "PostgreSQL at 10.1.2.3:6000");
        // The string wins over the environment.
        let info = parse("postgres://dave@other/x", &env).unwrap();
        assert_eq!(info.config.get_user(), Some("dave"));
        assert_eq!(info.server, "PostgreSQL at other:6000");
    }

    #[test]
    fn malformed_strings_get_one_line_reasons() {
        for (conninfo, expected) in [
            (
                "host=a bogus=1 user=x",
                "invalid connection option (the key after \"host\")",
            ),
            (
                "host",
                "missing \"=\" in connection info string (the first word)",
            ),
            (
                "password=abc SECRETPW",
                "(the word after the value of \"password\")",
            ),
            ("user=x password='open", "unterminated quoted string"),
            (
                "user=x sslmode=sometimes",
                "invalid sslmode value (expected disable,",
            ),
            ("user=x port=99999", "invalid port number"),
            (
                "user=x sslrootcert=system sslmode=require",
                "sslrootcert=system needs sslmode=verify-full",
            ),
            (
                "user=x sslcert=/c.pem",
                "certificate present, but not private key file",
            ),
            (
                "postgres://u:SECRETPW/x@host:5432/db",
                "an \"@\" after the host part",
            ),
            ("postgres://u:SECRETPW@host:5x/db", "invalid port number"),
            ("postgres://x@[::1/db", "missing \"]\""),
            (
                "postgres://x@h/db?%zz=1",
                "invalid percent-encoding in the URL",
            ),
            (
                "user=x connect_timeout=soon",
                "invalid integer value for connection option",
            ),
        ] {
            let error = parse(conninfo, &no_env).unwrap_err();
            assert!(!error.contains("SECRETPW"), "{error}");
            assert!(
                !error.contains("sometimes") && !error.contains("soon"),
                "{error}"
            );
            assert!(error.contains(expected), "{conninfo}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn sslrootcert_system_means_verify_full() {
        let info = parse("user=x sslrootcert=system", &no_env).unwrap();
        assert_eq!(info.ssl_mode, SslMode::VerifyFull);
        assert_eq!(info.root_cert, Some(RootCert::System));
        let info = parse("user=x sslrootcert=system sslmode=verify-full", &no_env).unwrap();
        assert_eq!(info.ssl_mode, SslMode::VerifyFull);
    }

    #[test]
    fn ipv6_and_several_hosts() {
        let info = parse("postgres://u@[::1]:5433,db2/x", &no_env).unwrap();
        assert_eq!(
            info.config.get_hosts(),
            &[Host::Tcp("::1".to_owned()), Host::Tcp("db2".to_owned())]
        );
        assert_eq!(info.config.get_ports(), &[5433, 5432]);
        assert_eq!(info.server, "PostgreSQL at [::1]:5433,db2:5432");
    }

    #[test]
    fn one_port_applies_to_every_host_in_each_form() {
        let env = |var: &str| match var {
            "PGHOST" => Some("10.0.0.1,10.0.0.2".to_owned()),
            "PGPORT" => Some("6001".to_owned()),
            _ => None,
        };
        for (conninfo, env, ports) in [
            (
                "host=10.0.0.1,10.0.0.2 port=6001 user=u",
                &no_env as &dyn Fn(&str) -> Option<String>,
                [6001, 6001],
            ),
            ("postgres://u@10.0.0.1,10.0.0.2/db", &no_env, [5432, 5432]),
            (
                "postgres://u@10.0.0.1,10.0.0.2/db?port=6001",
                &no_env,
                [6001, 6001],
            ),
            ("user=u", &env, [6001, 6001]),
        ] {
            let info = parse(conninfo, env).unwrap();
            assert_eq!(
                info.config.get_hosts(),
                &[
                    Host::Tcp("10.0.0.1".to_owned()),
                    Host::Tcp("10.0.0.2".to_owned())
                ],
                "{conninfo}"
            );
            // One port per host: tokio-postgres refuses any other count.
            assert_eq!(info.config.get_ports(), &ports, "{conninfo}");
        }
    }

    #[test]
    fn a_host_that_swallowed_other_keys_is_never_shown() {
        for conninfo in [
            "host='db password=SECRETPW' port=1 user=u",
            "host='db\tSECRETPW' port=1 user=u",
            "host='db,x\\'SECRETPW' port=1 user=u",
        ] {
            let info = parse(conninfo, &no_env).unwrap();
            assert!(!info.server.contains("SECRETPW"), "{}", info.server);
            assert!(
                info.server.contains("(a host that cannot be shown):1"),
                "{}",
                info.server
            );
        }
    }
}
