//! State shared by the extractors of one import: the base URL, counts of
//! URLs left out, notes, and the work budget that bounds the time spent
//! on hostile input.

use url::Url;

use crate::fields::Note;
use crate::text::{self, UrlOutcome};

/// Most steps (elements visited, text nodes read, JSON values walked)
/// one import takes: a page of the largest size the importer accepts,
/// nested as deep as a parser allows, is read in well under a second.
pub const MAX_STEPS: u64 = 20_000_000;

/// One import's shared state.
#[derive(Debug)]
pub struct Ctx {
    /// The page's address, for relative URLs.
    pub base: Option<Url>,
    relative: usize,
    refused: usize,
    /// Notes so far.
    pub notes: Vec<Note>,
    steps: u64,
    limited: bool,
}

impl Ctx {
    /// A fresh import resolving against `base`.
    pub fn new(base: Option<Url>) -> Self {
        Ctx {
            base,
            relative: 0,
            refused: 0,
            notes: Vec::new(),
            steps: 0,
            limited: false,
        }
    }

    /// Spends `n` steps; false (and a note, once) when the budget is
    /// spent, after which extractors stop.
    pub fn step(&mut self, n: u64) -> bool {
        self.steps = self.steps.saturating_add(n);
        if self.steps > MAX_STEPS {
            if !self.limited {
                self.limited = true;
                self.notes.push(Note::Limit {
                    what: format!("{MAX_STEPS} steps of work"),
                });
            }
            return false;
        }
        true
    }

    /// Whether the budget is spent.
    pub fn exhausted(&self) -> bool {
        self.limited
    }

    /// A note, once.
    pub fn note(&mut self, note: Note) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// `raw` as a kept URL, counting what is left out.
    pub fn url(&mut self, raw: &str) -> Option<String> {
        match text::clean_url(raw, self.base.as_ref()) {
            UrlOutcome::Kept(u) => Some(u),
            UrlOutcome::Empty => None,
            UrlOutcome::NoBase => {
                self.relative += 1;
                None
            }
            UrlOutcome::Refused => {
                self.refused += 1;
                None
            }
        }
    }

    /// Adds the URL counts to the notes.
    pub fn finish(mut self) -> Vec<Note> {
        if self.relative > 0 {
            self.notes.push(Note::RelativeUrls {
                count: self.relative,
            });
        }
        if self.refused > 0 {
            self.notes.push(Note::RefusedUrls {
                count: self.refused,
            });
        }
        self.notes
    }
}
