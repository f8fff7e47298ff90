//! Short codes (`specs/transfer.md` §1): a channel number and words of
//! the BIP 39 English list, e.g. `7-guitar-orbit`.

use std::fmt;
use std::sync::OnceLock;

use rand::CryptoRng;

use super::{MAX_CHANNEL, Purpose, TransferError};

/// The BIP 39 English word list, one word a line, sorted. Only the list
/// is used (every word known by its first four letters), not BIP 39's
/// checksums or seeds, so the list is kept as data rather than pulling in
/// a wallet library.
const WORD_LIST: &str = include_str!("words.txt");
/// Words in the list.
pub const WORD_COUNT: usize = 2048;

/// The 2,048 words.
pub fn words() -> &'static [&'static str] {
    static WORDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    WORDS.get_or_init(|| {
        WORD_LIST
            .lines()
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect()
    })
}

/// A code: its purpose, channel and words (indices into [`words`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Code {
    purpose: Purpose,
    channel: u32,
    words: Vec<u16>,
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The words are the secret.
        f.debug_struct("Code")
            .field("purpose", &self.purpose)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Code {
    /// A code from its parts; refuses a channel out of range, a word
    /// index past the list or the wrong number of words.
    pub fn new(purpose: Purpose, channel: u32, words: Vec<u16>) -> Result<Self, TransferError> {
        if !(1..=MAX_CHANNEL).contains(&channel) {
            return Err(TransferError::BadCode(format!(
                "the channel is a number from 1 to {MAX_CHANNEL}"
            )));
        }
        if words.len() != purpose.words() {
            return Err(TransferError::BadCode(format!(
                "this code has {} words after the number; {} expected",
                words.len(),
                purpose.words()
            )));
        }
        if words.iter().any(|&w| usize::from(w) >= WORD_COUNT) {
            return Err(TransferError::BadCode("a word is not in the list".into()));
        }
        Ok(Self {
            purpose,
            channel,
            words,
        })
    }

    /// A code on `channel` with words drawn from `rng`.
    pub fn random<R: CryptoRng + ?Sized>(
        purpose: Purpose,
        channel: u32,
        rng: &mut R,
    ) -> Result<Self, TransferError> {
        let words = (0..purpose.words())
            .map(|_| {
                let mut b = [0u8; 2];
                rng.fill_bytes(&mut b);
                // 2,048 divides 65,536: uniform.
                u16::from_be_bytes(b) % WORD_COUNT as u16
            })
            .collect();
        Self::new(purpose, channel, words)
    }

    /// Reads a code as a person typed it: any case, dashes or spaces
    /// between the parts, a word by its first four letters or more.
    pub fn parse(purpose: Purpose, text: &str) -> Result<Self, TransferError> {
        let mut parts = text
            .split(|c: char| c == '-' || c.is_whitespace())
            .filter(|p| !p.is_empty());
        let channel = parts
            .next()
            .ok_or_else(|| TransferError::BadCode("the code is empty".into()))?;
        let channel: u32 = if channel.bytes().all(|b| b.is_ascii_digit()) && channel.len() <= 7 {
            channel
                .parse()
                .map_err(|_| TransferError::BadCode("the channel is not a number".into()))?
        } else {
            return Err(TransferError::BadCode(
                "a code starts with its channel number, e.g. 7-guitar-orbit".into(),
            ));
        };
        let words = parts.map(word_index).collect::<Result<Vec<u16>, _>>()?;
        Self::new(purpose, channel, words)
    }

    /// Its purpose.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// Its channel.
    pub fn channel(&self) -> u32 {
        self.channel
    }
}

/// The normalized code: `channel-word-word`, lowercase.
impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.channel)?;
        for &w in &self.words {
            write!(f, "-{}", words()[usize::from(w)])?;
        }
        Ok(())
    }
}

fn word_index(typed: &str) -> Result<u16, TransferError> {
    let w = typed.to_lowercase();
    let list = words();
    let found = match list.binary_search(&w.as_str()) {
        Ok(i) => Some(i),
        // Every word is known by its first four letters (BIP 39), so a
        // typed prefix of four or more letters names at most one word:
        // the first at or after it in the sorted list.
        Err(_) if w.len() >= 4 => {
            let i = list.partition_point(|x| *x < w.as_str());
            list.get(i).filter(|x| x.starts_with(w.as_str())).map(|_| i)
        }
        Err(_) => None,
    };
    match found.and_then(|i| u16::try_from(i).ok()) {
        Some(i) => Ok(i),
        None => Err(TransferError::BadCode(format!(
            "\"{}\" is not a word of the code list",
            typed.chars().take(20).collect::<String>()
        ))),
    }
}
