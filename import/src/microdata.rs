//! HTML microdata (`itemscope`, `itemtype`, `itemprop`) as JSON-LD-shaped
//! nodes, by the HTML standard's rules for an item's properties and a
//! property's value, in one walk of the tree (no recursion: nesting is
//! bounded only by the parser). `itemref` is not followed.

use ego_tree::iter::Edge;
use scraper::{Html, Node};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::html::text_of;
use crate::schema::{
    MAX_NODES, MAX_TERMS, Proto, Slot, assemble, capped, first_distinct, strip_vocab,
};

/// Longest text value read for one property.
const MAX_VALUE: usize = 64 * 1024;

/// The page's top-level microdata items, each with its nested items in
/// place, as JSON-LD-shaped values.
pub fn items(doc: &Html, ctx: &mut Ctx) -> Vec<Value> {
    let mut items: Vec<Proto> = Vec::new();
    let mut top: Vec<usize> = Vec::new();
    // (the element opening a scope, its item)
    let mut scopes: Vec<(ego_tree::NodeId, usize)> = Vec::new();
    for edge in doc.tree.root().traverse() {
        if !ctx.step(1) {
            break;
        }
        let node = match edge {
            Edge::Open(n) => n,
            Edge::Close(n) => {
                if scopes.last().is_some_and(|(id, _)| *id == n.id()) {
                    scopes.pop();
                }
                continue;
            }
        };
        let Node::Element(el) = node.value() else {
            continue;
        };
        // A set of names (HTML's itemprop), at most MAX_TERMS of them.
        let names: Vec<String> = el
            .attr("itemprop")
            .map(|p| {
                first_distinct(
                    p.split_ascii_whitespace()
                        .map(|n| strip_vocab(n).to_owned()),
                    MAX_TERMS,
                )
            })
            .unwrap_or_default();
        let current = scopes.last().map(|(_, i)| *i);
        if el.attr("itemscope").is_some() {
            if items.len() >= MAX_NODES {
                break;
            }
            let index = items.len();
            items.push(Proto {
                types: el
                    .attr("itemtype")
                    .map(|t| {
                        first_distinct(
                            t.split_ascii_whitespace()
                                .map(|n| strip_vocab(n).to_owned()),
                            MAX_TERMS,
                        )
                    })
                    .unwrap_or_default(),
                props: Vec::new(),
            });
            match current {
                Some(parent) if !names.is_empty() => {
                    for n in names {
                        items[parent].props.push((n, Slot::Node(index)));
                    }
                }
                _ => top.push(index),
            }
            scopes.push((node.id(), index));
        } else if let Some(parent) = current
            && !names.is_empty()
        {
            let value = property_value(node, el, ctx);
            if !ctx.step((value.len() * names.len()) as u64 / 64) {
                break;
            }
            for n in names {
                items[parent].props.push((n, Slot::Text(value.clone())));
            }
        }
    }
    assemble(&items, &top)
}

/// A property's value by the element that carries it (HTML §5.4): a
/// `meta`'s content, a media element's `src`, a link's `href`, an
/// object's `data`, a `data` or `meter`'s value, a `time`'s `datetime`;
/// otherwise the element's text. A `link` or any other element with a
/// `content` attribute and none of those (YouTube writes
/// `<link itemprop="name" content="...">`) gives its `content`.
fn property_value(
    node: ego_tree::NodeRef<'_, Node>,
    el: &scraper::node::Element,
    ctx: &mut Ctx,
) -> String {
    let attr = |a: &str| el.attr(a).map(|v| capped(v, MAX_VALUE));
    let by_element = match el.name() {
        "meta" => Some(attr("content").unwrap_or_default()),
        "audio" | "embed" | "iframe" | "img" | "source" | "track" | "video" => attr("src"),
        "a" | "area" | "link" => attr("href"),
        "object" => attr("data"),
        "data" | "meter" => attr("value"),
        "time" => attr("datetime"),
        _ => None,
    };
    by_element
        .or_else(|| attr("content"))
        .unwrap_or_else(|| text_of(node, MAX_VALUE, ctx))
}
