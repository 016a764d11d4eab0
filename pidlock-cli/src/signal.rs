//! Signal names, as `kill(1)` spells them, and back.

use rustix::process::Signal;

/// The signals a user may name, without the `SIG` prefix.
const NAMES: &[(&str, Signal)] = &[
    ("HUP", Signal::HUP),
    ("INT", Signal::INT),
    ("QUIT", Signal::QUIT),
    ("KILL", Signal::KILL),
    ("USR1", Signal::USR1),
    ("USR2", Signal::USR2),
    ("TERM", Signal::TERM),
    ("ALRM", Signal::ALARM),
    ("CONT", Signal::CONT),
    ("STOP", Signal::STOP),
    ("TSTP", Signal::TSTP),
    ("WINCH", Signal::WINCH),
    ("PIPE", Signal::PIPE),
    ("ABRT", Signal::ABORT),
];

/// Parses `TERM`, `SIGTERM`, `term` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(number) = text.parse::<i32>() {
        return NAMES
            .iter()
            .map(|&(_, signal)| signal)
            .find(|signal| signal.as_raw() == number)
            .ok_or_else(|| format!("{number} is not a signal pidlock knows; use a name"));
    }
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .find(|(name, _)| *name == bare)
        .map(|&(_, signal)| signal)
        .ok_or_else(|| {
            let known: Vec<&str> = NAMES.iter().map(|(name, _)| *name).collect();
            format!(
                "unknown signal `{text}`; expected one of {}",
                known.join(", ")
            )
        })
}

/// `SIGTERM` for [`Signal::TERM`].
pub fn signal_name(signal: Signal) -> String {
    NAMES
        .iter()
        .find(|(_, known)| *known == signal)
        .map_or_else(
            || format!("signal {}", signal.as_raw()),
            |(name, _)| format!("SIG{name}"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::TERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::INT));
        assert_eq!(parse_signal("9"), Ok(Signal::KILL));
        assert!(parse_signal("TREM").is_err());
        assert!(parse_signal("0").is_err());
        assert_eq!(signal_name(Signal::HUP), "SIGHUP");
    }
}
