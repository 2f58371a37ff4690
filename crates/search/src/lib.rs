//! What a message is found by: its searchable text cut into terms, the same for every
//! storage backend, so that SQLite FTS5, MariaDB FULLTEXT and PostgreSQL full-text search all
//! index exactly what the logic layer asks for.
//!
//! Text is lowercased (full-width Latin letters and digits folded to ASCII) and cut into
//! runs. A run of letters and digits of an alphabetic script is one word. A run of Han,
//! Kana or Hangul characters, which need no spaces between words, is cut into overlapping
//! pairs of characters (bigrams, as Lucene's CJK analyzer does) and, in a document, single
//! characters too: "全文搜索" is indexed under 全文, 文搜, 搜索 and each character, and a
//! query "搜索" finds it by its one bigram, a query "搜" by its unigram.
//!
//! Each term is stored as `t` and 16 hex digits of its 64-bit FNV-1a hash: a plain ASCII
//! word that every backend's tokenizer keeps whole, that no stop-word list holds, and that
//! is the same length whatever the script. Two terms that share a hash (about one pair in
//! 2^64) would find each other's messages; the cost of that is a wrong hit, never a miss.
//!
//! A message is also indexed under its conversation's **scope**: each user of a 1:1 message
//! (`u` and the id in 16 hex digits), or its group (`g` and the id). A search asks for its
//! words *and* any of the searcher's scopes, so the index itself narrows the hits to the
//! searcher's conversations instead of every user's, and a common word costs what the
//! searcher's own messages hold, not what the whole store does.
//!
//! This crate owns the term rules. It knows messages only as the schema defines them, and
//! never touches storage. The rules are part of every stored index: changing them makes
//! stored messages unfindable until they are indexed again.

use missive_proto::client::{Message, MessageKind};

/// Terms a message is indexed under at most (a 16 KiB text of Han characters would have
/// about 11,000): what lies beyond is not found.
pub const DOCUMENT_TERMS_MAX: usize = 4_096;
/// The longest query accepted, in bytes.
pub const QUERY_BYTES_MAX: usize = 256;
/// Terms a query holds at most, each of which a hit must have.
pub const QUERY_TERMS_MAX: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query holds no word to search for")]
    Empty,
    #[error("a query is at most {QUERY_BYTES_MAX} bytes")]
    TooLong,
    #[error("a query holds at most {QUERY_TERMS_MAX} words")]
    TooManyTerms,
}

/// The terms `message` is indexed under, space-separated; empty when it is not searchable
/// (a kind that is no one's words, or recalled). Texts are found by their text; images and
/// files by their caption and file name.
pub fn document(message: &Message) -> String {
    if message.recalled {
        return String::new();
    }
    let searchable = match MessageKind::try_from(message.kind) {
        Ok(MessageKind::Text | MessageKind::Unspecified) => message.text.clone(),
        Ok(MessageKind::Image | MessageKind::File) => {
            let name = message.media.as_ref().map_or("", |m| m.name.as_str());
            format!("{} {name}", message.text)
        }
        _ => return String::new(),
    };
    let mut terms = Vec::new();
    if message.group_id != 0 {
        terms.push(group_scope(message.group_id));
    } else {
        terms.push(user_scope(message.from_user_id));
        if message.to_user_id != message.from_user_id {
            terms.push(user_scope(message.to_user_id));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for term in terms_of(&searchable, true) {
        if terms.len() == DOCUMENT_TERMS_MAX {
            break;
        }
        let hashed = hashed(&term);
        if seen.insert(hashed.clone()) {
            terms.push(hashed);
        }
    }
    if seen.is_empty() {
        return String::new();
    }
    terms.join(" ")
}

/// The scope term of a user's 1:1 messages: `u` and 16 hex digits (fixed length, so that no
/// backend's minimum word length drops it).
pub fn user_scope(user_id: u64) -> String {
    format!("u{user_id:016x}")
}

/// The scope term of a group's messages.
pub fn group_scope(group_id: u64) -> String {
    format!("g{group_id:016x}")
}

/// The terms a hit must all have, for a query as a user typed it.
pub fn query(text: &str) -> Result<Vec<String>, QueryError> {
    if text.len() > QUERY_BYTES_MAX {
        return Err(QueryError::TooLong);
    }
    let mut terms: Vec<String> = Vec::new();
    for term in terms_of(text, false) {
        let hashed = hashed(&term);
        if !terms.contains(&hashed) {
            terms.push(hashed);
        }
    }
    match terms.len() {
        0 => Err(QueryError::Empty),
        n if n > QUERY_TERMS_MAX => Err(QueryError::TooManyTerms),
        _ => Ok(terms),
    }
}

/// `t` and the 16 hex digits of the term's 64-bit FNV-1a hash.
fn hashed(term: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in term.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("t{hash:016x}")
}

/// Han, Kana and Hangul: scripts written without spaces between words.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{11FF}'
        | '\u{2E80}'..='\u{2FDF}'
        | '\u{3040}'..='\u{30FF}'
        | '\u{3130}'..='\u{318F}'
        | '\u{31F0}'..='\u{31FF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{AC00}'..='\u{D7AF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FF66}'..='\u{FF9F}'
        | '\u{20000}'..='\u{2FA1F}')
}

/// Full-width Latin letters, digits and signs as their ASCII selves.
fn fold(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// The words and CJK terms of `text`, in order; `unigrams` also yields every CJK character
/// of a run (a document's terms; a query's run of two or more is matched by its bigrams).
fn terms_of(text: &str, unigrams: bool) -> Vec<String> {
    let mut terms = Vec::new();
    let mut word = String::new();
    let mut run: Vec<char> = Vec::new();
    let flush_word = |word: &mut String, terms: &mut Vec<String>| {
        if !word.is_empty() {
            terms.push(std::mem::take(word));
        }
    };
    let flush_run = |run: &mut Vec<char>, terms: &mut Vec<String>| {
        if run.len() == 1 || (unigrams && !run.is_empty()) {
            terms.extend(run.iter().map(|c| c.to_string()));
        }
        terms.extend(run.windows(2).map(|pair| pair.iter().collect::<String>()));
        run.clear();
    };
    for c in text.chars().map(fold).flat_map(char::to_lowercase) {
        if is_cjk(c) {
            flush_word(&mut word, &mut terms);
            run.push(c);
        } else if c.is_alphanumeric() {
            flush_run(&mut run, &mut terms);
            word.push(c);
        } else {
            flush_word(&mut word, &mut terms);
            flush_run(&mut run, &mut terms);
        }
    }
    flush_word(&mut word, &mut terms);
    flush_run(&mut run, &mut terms);
    terms
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive_proto::client::MediaRef;
    use proptest::prelude::*;

    fn text(text: &str) -> Message {
        Message { kind: MessageKind::Text as i32, text: text.into(), ..Default::default() }
    }

    /// Whether a message with `document` is found by `query`, as every backend decides.
    fn finds(document_text: &str, query_text: &str) -> bool {
        let indexed = document(&text(document_text));
        let indexed: Vec<&str> = indexed.split(' ').collect();
        query(query_text).unwrap().iter().all(|term| indexed.contains(&term.as_str()))
    }

    #[test]
    fn words_are_found_whatever_their_case_and_punctuation() {
        assert!(finds("Meet me at the Café, 10:30?", "café"));
        assert!(finds("Meet me at the Café, 10:30?", "MEET 10"));
        assert!(!finds("Meet me at the Café", "cafe"), "no accent folding");
        assert!(!finds("Meet me at the Café", "meeting"), "no stemming: whole words");
        assert!(finds("ＡＢＣ１２３ full width", "abc123"));
    }

    #[test]
    fn chinese_and_japanese_are_found_without_spaces() {
        let chinese = "我们明天去北京开会";
        assert!(finds(chinese, "北京"));
        assert!(finds(chinese, "开会"));
        assert!(finds(chinese, "京"), "one character: its unigram");
        assert!(finds(chinese, "明天 北京"));
        assert!(!finds(chinese, "上海"));
        let japanese = "東京で会議があります";
        assert!(finds(japanese, "会議"));
        assert!(finds(japanese, "東京"));
        assert!(finds("mixed 北京 text", "北京 text"));
    }

    #[test]
    fn what_is_not_someones_words_is_not_indexed() {
        let recalled = Message { recalled: true, ..text("secret") };
        assert_eq!(document(&recalled), "");
        let receipt = Message { kind: MessageKind::Receipt as i32, ..text("x") };
        assert_eq!(document(&receipt), "");
        let file = Message {
            kind: MessageKind::File as i32,
            text: "the plan".into(),
            media: Some(MediaRef { name: "budget.pdf".into(), ..Default::default() }),
            ..Default::default()
        };
        let indexed = document(&file);
        for word in ["plan", "budget", "pdf"] {
            assert!(indexed.contains(&query(word).unwrap()[0]), "{word}");
        }
    }

    #[test]
    fn messages_are_scoped_to_their_users_or_group() {
        let direct = Message { from_user_id: 1, to_user_id: 2, ..text("hi") };
        let terms = document(&direct);
        assert!(terms.contains(&user_scope(1)) && terms.contains(&user_scope(2)));
        let group = Message { group_id: 1 << 50, to_user_id: 1 << 50, ..direct };
        let terms = document(&group);
        assert!(terms.contains(&group_scope(1 << 50)) && !terms.contains(&user_scope(1)));
        assert_eq!(user_scope(1).len(), 17);
    }

    #[test]
    fn queries_are_bounded() {
        assert_eq!(query("  ,.!  "), Err(QueryError::Empty));
        assert_eq!(query(&"a".repeat(QUERY_BYTES_MAX + 1)), Err(QueryError::TooLong));
        let many: Vec<String> = (0..=QUERY_TERMS_MAX).map(|n| format!("w{n}")).collect();
        assert_eq!(query(&many.join(" ")), Err(QueryError::TooManyTerms));
        assert_eq!(query("same Same SAME").unwrap().len(), 1);
    }

    #[test]
    fn terms_are_stable_ascii_words() {
        // Stored indexes depend on these exact values: they never change.
        assert_eq!(hashed("hello"), "ta430d84680aabd0b");
        assert_eq!(document(&text("")), "");
        let long = "字".repeat(10_000) + &(0..10_000).map(|n| format!("w{n} ")).collect::<String>();
        assert_eq!(document(&text(&long)).split(" ").count(), DOCUMENT_TERMS_MAX);
    }

    proptest! {
        #[test]
        fn every_word_of_a_text_finds_it(words in proptest::collection::vec("[a-zé]{1,8}|[一-龥]{1,4}", 1..8)) {
            let sentence = words.join(" ");
            for word in &words {
                prop_assert!(finds(&sentence, word), "{word:?} in {sentence:?}");
            }
            let terms = document(&text(&sentence));
            prop_assert!(terms.split(' ').all(|t| t.len() == 17 && t.starts_with(['t', 'u', 'g'])));
        }
    }
}
