//! What the `mtos` subcommands share: the clock, dates as people read
//! them, the keychain opened read-only, and files written without
//! overwriting.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::io::IsTerminal;

use mtos_client::{ClientError, Home, passphrase};
use mtos_crypto::{Keychain, KeychainError};

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An RFC 3339 date, or the raw number for times humantime cannot show
/// (past year 9999): times come from untrusted items and must not panic.
pub(crate) fn date(secs: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    match UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
        Some(t) if secs < 253_402_300_800 => {
            if write!(out, "{}", humantime::format_rfc3339_seconds(t)).is_err() {
                out = format!("{secs} s after 1970");
            }
        }
        _ => out = format!("{secs} s after 1970"),
    }
    out
}

/// Opens the keychain read-only.
pub(crate) fn open(home: &Home) -> Result<Keychain, ClientError> {
    let file = home.keychain();
    if !file.exists() {
        return Err(KeychainError::Missing(file.path().to_owned()).into());
    }
    let pass = passphrase::existing()?;
    Ok(file.load(&pass)?)
}

/// An I/O error on `path`, with "already exists" reported as a refusal
/// to overwrite.
pub(crate) fn no_overwrite(path: &Path, source: std::io::Error) -> ClientError {
    if source.kind() == std::io::ErrorKind::AlreadyExists {
        ClientError::Refused(format!(
            "{} exists; refusing to overwrite it",
            path.display()
        ))
    } else {
        ClientError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Creates a new file (not secret); refuses to replace an existing one.
pub(crate) fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| no_overwrite(path, source))
}

/// Creates a new owner-only file; refuses to replace an existing one.
pub(crate) fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    mtos_crypto::create_owner_only(path, bytes).map_err(|source| no_overwrite(path, source))
}

/// Runs `edit` on the keychain under the lock and saves the result; the
/// file is only replaced if `edit` succeeds.
pub(crate) fn modify<T>(
    home: &Home,
    create: bool,
    edit: impl FnOnce(&mut Keychain) -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let file = home.keychain();
    if !file.exists() && !create {
        return Err(KeychainError::Missing(file.path().to_owned()).into());
    }
    home.ensure()?;
    let cost = passphrase::kdf_cost()?;
    let _lock = file.lock()?;
    let (mut keychain, pass) = if file.exists() {
        let pass = passphrase::existing()?;
        (file.load(&pass)?, pass)
    } else {
        eprintln!("creating a new keychain at {}", file.path().display());
        (Keychain::new(), passphrase::new_keychain()?)
    };
    let out = edit(&mut keychain)?;
    file.save(&keychain, &pass, cost)?;
    Ok(out)
}

/// Asks a yes/no question on the terminal; anything but yes refuses.
/// `action` names what would be done, for the refusal off a terminal.
pub(crate) fn confirm(question: &str, action: &str) -> Result<(), ClientError> {
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Refused(format!(
            "refusing to {action} without --yes when not on a terminal"
        )));
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|source| ClientError::Io {
            path: "stdin".into(),
            source,
        })?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(ClientError::Refused("answered no: nothing changed".into()))
    }
}
