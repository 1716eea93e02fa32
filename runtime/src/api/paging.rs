//! Paging for the `List` calls: a page holds at most what the client asked for and at most
//! [`MAX_PAGE_BYTES`], so no list answer grows with the number or size of what it lists.

use std::ops::Bound;

use std::collections::BTreeMap;

/// A page stops growing once its encoded messages reach this; it always holds at least one, and
/// a single item is bounded by the record limit (`daemon::store::max_record_bytes`).
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// One page of `items` (keyed and ordered by name or id), the keys after `page_token`, made
/// into messages by `to_message`. `page_size` 0 means everything at once (clients from before
/// paging), bounded only by the API's message limit. Returns the page and the token of the
/// next, empty when this page is the last.
pub fn page<V, M: prost::Message>(
    items: &BTreeMap<String, V>,
    page_size: u32,
    page_token: &str,
    mut to_message: impl FnMut(&V) -> Option<M>,
) -> (Vec<M>, String) {
    let start = match page_token {
        "" => Bound::Unbounded,
        token => Bound::Excluded(token.to_string()),
    };
    let mut messages = Vec::new();
    let mut page_bytes = 0usize;
    let mut candidates = items.range((start, Bound::Unbounded)).peekable();
    while let Some((key, value)) = candidates.next() {
        let Some(message) = to_message(value) else { continue };
        page_bytes += message.encoded_len();
        messages.push(message);
        let page_is_full = page_size != 0 && (messages.len() >= page_size as usize || page_bytes >= MAX_PAGE_BYTES);
        if page_is_full && candidates.peek().is_some() {
            return (messages, key.clone());
        }
    }
    (messages, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_token_and_stop_at_the_size_or_the_bytes() {
        let items: BTreeMap<String, String> = (0..5).map(|idx| (format!("k{idx}"), format!("v{idx}"))).collect();
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let (messages, next) = page(&items, 2, &token, |value| Some(value.clone()));
            assert!(messages.len() <= 2);
            seen.extend(messages);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, ["v0", "v1", "v2", "v3", "v4"]);
        let (all, next) = page(&items, 0, "", |value| Some(value.clone()));
        assert_eq!((all.len(), next.as_str()), (5, ""));

        let big: BTreeMap<String, String> = (0..3).map(|idx| (format!("k{idx}"), "x".repeat(3 << 20))).collect();
        let (first, next) = page(&big, 100, "", |value| Some(value.clone()));
        assert_eq!((first.len(), next.as_str()), (2, "k1"));
        let (second, next) = page(&big, 100, &next, |value| Some(value.clone()));
        assert_eq!((second.len(), next.as_str()), (1, ""));
    }
}
