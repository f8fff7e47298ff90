//! Where the keychain passphrase comes from: `MTOS_PASSPHRASE` (for
//! scripts), else a prompt on the terminal. Never from a command-line
//! argument, which other users could read from the process list.

use std::io::IsTerminal;

use mtos_crypto::{ExposeSecret, KdfCost, SecretString};

use crate::error::ClientError;

/// The environment variable scripts set instead of answering a prompt.
pub const PASSPHRASE_ENV: &str = "MTOS_PASSPHRASE";
/// The new passphrase for `mtos id passwd`, for scripts.
pub const NEW_PASSPHRASE_ENV: &str = "MTOS_NEW_PASSPHRASE";
/// The passphrase of an OpenPGP secret key being imported, for scripts.
pub const OPENPGP_PASSPHRASE_ENV: &str = "MTOS_OPENPGP_PASSPHRASE";
/// Sets the scrypt work factor (log2 N) for keychains this process writes.
/// Lower values make commands faster and the keychain easier to crack:
/// meant for tests and throwaway demo homes only.
pub const KDF_LOG_N_ENV: &str = "MTOS_KDF_LOG_N";

/// Reads the passphrase of an existing keychain.
pub fn existing() -> Result<SecretString, ClientError> {
    if let Some(p) = from_env()? {
        return Ok(p);
    }
    prompt("Keychain passphrase: ")
}

/// Chooses the passphrase of a new keychain (asked twice on a terminal).
pub fn new_keychain() -> Result<SecretString, ClientError> {
    if let Some(p) = from_env()? {
        return Ok(p);
    }
    prompt_twice("nothing was created")
}

/// Chooses a replacement passphrase: `MTOS_NEW_PASSPHRASE`, or asked
/// twice on a terminal.
pub fn replacement() -> Result<SecretString, ClientError> {
    match std::env::var(NEW_PASSPHRASE_ENV) {
        Ok(p) if p.is_empty() => Err(ClientError::Passphrase(format!(
            "{NEW_PASSPHRASE_ENV} is set but empty"
        ))),
        Ok(p) => Ok(SecretString::from(p)),
        Err(_) => prompt_twice("the keychain is unchanged"),
    }
}

/// The passphrase of a protected OpenPGP secret key:
/// `MTOS_OPENPGP_PASSPHRASE`, or asked on a terminal.
pub fn openpgp_key() -> Result<SecretString, ClientError> {
    match std::env::var(OPENPGP_PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => Ok(SecretString::from(p)),
        _ => prompt_or("OpenPGP key passphrase: ", OPENPGP_PASSPHRASE_ENV),
    }
}

/// The scrypt cost for writing a keychain.
pub fn kdf_cost() -> Result<KdfCost, ClientError> {
    match std::env::var(KDF_LOG_N_ENV) {
        Err(_) => Ok(KdfCost::Calibrated),
        Ok(v) => match v.trim().parse::<u8>() {
            Ok(n) if (1..=mtos_crypto::keychain::MAX_LOG_N).contains(&n) => Ok(KdfCost::LogN(n)),
            _ => Err(ClientError::Passphrase(format!(
                "{KDF_LOG_N_ENV} must be a number from 1 to {}",
                mtos_crypto::keychain::MAX_LOG_N
            ))),
        },
    }
}

fn from_env() -> Result<Option<SecretString>, ClientError> {
    match std::env::var(PASSPHRASE_ENV) {
        Ok(p) if p.is_empty() => Err(ClientError::Passphrase(format!(
            "{PASSPHRASE_ENV} is set but empty"
        ))),
        Ok(p) => Ok(Some(SecretString::from(p))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ClientError::Passphrase(format!(
            "{PASSPHRASE_ENV} is not valid UTF-8"
        ))),
    }
}

/// Asks for a new passphrase twice; `outcome` says what a mismatch leaves.
fn prompt_twice(outcome: &str) -> Result<SecretString, ClientError> {
    let first = prompt("New keychain passphrase: ")?;
    let second = prompt("Repeat the new passphrase: ")?;
    if first.expose_secret() != second.expose_secret() {
        return Err(ClientError::Passphrase(format!(
            "the two passphrases differ; {outcome}"
        )));
    }
    Ok(first)
}

fn prompt(text: &str) -> Result<SecretString, ClientError> {
    prompt_or(text, PASSPHRASE_ENV)
}

/// Asks on the terminal; off one, says which variable to set.
fn prompt_or(text: &str, env: &str) -> Result<SecretString, ClientError> {
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Passphrase(format!(
            "no passphrase: set {env} or run in a terminal"
        )));
    }
    let p = rpassword::prompt_password(text)
        .map_err(|e| ClientError::Passphrase(format!("could not read the passphrase: {e}")))?;
    if p.is_empty() {
        return Err(ClientError::Passphrase(
            "an empty passphrase is not allowed".into(),
        ));
    }
    Ok(SecretString::from(p))
}
