//! RDFa in the schema.org vocabulary (RDFa Lite's `vocab`, `typeof`,
//! `property`, `resource`, `prefix`; the `schema:` prefix of RDFa's
//! initial context; full `https://schema.org/` terms) as JSON-LD-shaped
//! nodes, in one walk of the tree. Properties of other vocabularies
//! (Open Graph's `og:` meta tags among them: their own source) are left
//! out.

use ego_tree::iter::Edge;
use scraper::{Html, Node};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::html::text_of;
use crate::schema::{MAX_NODES, MAX_TERMS, Proto, Slot, assemble, capped, first_distinct};

const MAX_VALUE: usize = 64 * 1024;

#[derive(Clone)]
struct Context {
    /// Whether bare terms are schema.org's (`vocab`).
    vocab: bool,
    /// Prefixes that name schema.org (`schema` from the initial
    /// context, and any the page declares).
    prefixes: Vec<String>,
    /// The node properties attach to.
    subject: Option<usize>,
}

fn is_schema_iri(iri: &str) -> bool {
    let t = iri.trim();
    ["http://schema.org", "https://schema.org"]
        .iter()
        .any(|p| t == *p || t.strip_prefix(p).is_some_and(|r| r == "/" || r == "#"))
}

/// A term (`name`, `schema:name`, `https://schema.org/name`) as a
/// schema.org term, if it is one under `ctx`.
fn term(t: &str, ctx: &Context) -> Option<String> {
    for iri in ["https://schema.org/", "http://schema.org/"] {
        if let Some(rest) = t.strip_prefix(iri) {
            return (!rest.is_empty()).then(|| rest.to_owned());
        }
    }
    if let Some((prefix, rest)) = t.split_once(':') {
        return (ctx.prefixes.iter().any(|p| p == prefix) && !rest.is_empty())
            .then(|| rest.to_owned());
    }
    ctx.vocab.then(|| t.to_owned())
}

/// The page's top-level schema.org RDFa nodes.
pub fn nodes(doc: &Html, ctx: &mut Ctx) -> Vec<Value> {
    let mut nodes: Vec<Proto> = Vec::new();
    let mut top: Vec<usize> = Vec::new();
    let mut stack: Vec<(ego_tree::NodeId, Context)> = Vec::new();
    let initial = Context {
        vocab: false,
        prefixes: vec!["schema".into()],
        subject: None,
    };
    for edge in doc.tree.root().traverse() {
        if !ctx.step(1) {
            break;
        }
        let node = match edge {
            Edge::Open(n) => n,
            Edge::Close(n) => {
                if stack.last().is_some_and(|(id, _)| *id == n.id()) {
                    stack.pop();
                }
                continue;
            }
        };
        let Node::Element(el) = node.value() else {
            continue;
        };
        let (vocab, prefix, property, typeof_) = (
            el.attr("vocab"),
            el.attr("prefix"),
            el.attr("property"),
            el.attr("typeof"),
        );
        if vocab.is_none() && prefix.is_none() && property.is_none() && typeof_.is_none() {
            continue;
        }
        let mut c = stack
            .last()
            .map_or_else(|| initial.clone(), |(_, c)| c.clone());
        if let Some(v) = vocab {
            c.vocab = is_schema_iri(v);
        }
        if let Some(p) = prefix {
            // At most 32 prefixes an element: each element copies them.
            let words: Vec<&str> = p.split_ascii_whitespace().take(64).collect();
            for pair in words.chunks(2) {
                if let [name, iri] = pair
                    && let Some(name) = name.strip_suffix(':')
                {
                    c.prefixes.retain(|x| x != name);
                    if is_schema_iri(iri) && c.prefixes.len() < 32 {
                        c.prefixes.push(name.to_owned());
                    }
                }
            }
        }
        let names: Vec<String> = property
            .map(|p| {
                first_distinct(
                    p.split_ascii_whitespace().filter_map(|t| term(t, &c)),
                    MAX_TERMS,
                )
            })
            .unwrap_or_default();
        let types: Vec<String> = typeof_
            .map(|t| {
                first_distinct(
                    t.split_ascii_whitespace().filter_map(|t| term(t, &c)),
                    MAX_TERMS,
                )
            })
            .unwrap_or_default();
        if typeof_.is_some() && !types.is_empty() {
            if nodes.len() >= MAX_NODES {
                break;
            }
            let index = nodes.len();
            nodes.push(Proto {
                types,
                props: Vec::new(),
            });
            match c.subject {
                Some(parent) if !names.is_empty() => {
                    for n in &names {
                        nodes[parent].props.push((n.clone(), Slot::Node(index)));
                    }
                }
                _ => top.push(index),
            }
            c.subject = Some(index);
        } else if let Some(subject) = c.subject
            && !names.is_empty()
        {
            let attr = |a: &str| el.attr(a).map(|v| capped(v, MAX_VALUE));
            let value = attr("content")
                .or_else(|| attr("datetime"))
                .or_else(|| attr("resource"))
                .or_else(|| attr("href"))
                .or_else(|| attr("src"))
                .unwrap_or_else(|| text_of(node, MAX_VALUE, ctx));
            if !ctx.step((value.len() * names.len()) as u64 / 64) {
                break;
            }
            for n in names {
                nodes[subject].props.push((n, Slot::Text(value.clone())));
            }
        }
        stack.push((node.id(), c));
    }
    assemble(&nodes, &top)
}
