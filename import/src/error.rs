//! Why an import failed. An import that only lost something on the way
//! (a malformed JSON-LD block, a relative URL without a base) is not an
//! error: it gives an item and says what it left out
//! ([`crate::Note`]).

/// An import that gives no item.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is over its size limit; nothing of it was parsed.
    #[error("{what} is {len} bytes or more, over the limit of {limit} bytes")]
    TooLarge {
        /// What was read ("the page", "the oEmbed response").
        what: &'static str,
        /// How much was read before stopping.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The input is empty.
    #[error("{what} is empty")]
    Empty {
        /// What was read.
        what: &'static str,
    },
    /// An oEmbed response that is not valid JSON or XML, or lacks what
    /// oEmbed requires.
    #[error("not an oEmbed response: {reason}")]
    BadOEmbed {
        /// What is wrong with it, in a few words.
        reason: String,
    },
    /// Two oEmbed responses were given (the input itself, and another
    /// beside it).
    #[error(
        "the input is an oEmbed response already: give a page with --oembed, or the response alone"
    )]
    TwoOEmbeds,
    /// A base URL given by the person that is not an absolute http(s)
    /// URL.
    #[error("the page's address must be an absolute http or https URL, not {given:?}")]
    BadBase {
        /// What was given (shortened).
        given: String,
    },
    /// Nothing in the input describes an item: no title, description,
    /// URL or media.
    #[error("nothing to import: the input names no title, description, address or media")]
    Nothing,
}
