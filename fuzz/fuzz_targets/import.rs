//! Feeds arbitrary bytes to the web page and oEmbed importer: a page
//! alone, and a page with an oEmbed response and a base address.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mtos_import::{Options, import};

fuzz_target!(|data: &[u8]| {
    let _ = import(data, None, &Options::default());
    if let Some((&first, rest)) = data.split_first() {
        let at = usize::from(first) * rest.len() / 256;
        let (page, oembed) = rest.split_at(at);
        let options = Options {
            url: Some("https://fuzz.example/dir/page.html".into()),
        };
        let _ = import(page, Some(oembed), &options);
    }
});
