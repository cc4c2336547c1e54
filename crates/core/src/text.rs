//! Small text utilities shared by lexical search and the extractive
//! answerer: word splitting, stop words, light stemming, sentence splitting.

/// English function words that carry no topic; dropping them keeps "What
/// does the X do?" from matching every chunk that says "what".
const STOP_WORDS: &[&str] = &[
    "a", "about", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by",
    "can", "could", "describe", "did", "do", "does", "doing", "explain", "for", "from", "had",
    "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me", "my", "no",
    "not", "of", "on", "or", "our", "please", "should", "so", "some", "tell", "than", "that",
    "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "too", "us",
    "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will",
    "with", "would", "you", "your",
];

pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// Lower-cased alphanumeric words (underscores kept, so `unwrap_or` is one).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// A crude suffix stripper, enough to match "errors" with "error" and
/// "returning" with "return" when scoring sentences.
pub fn stem(word: &str) -> String {
    for suffix in ["ing", "ed", "es", "s"] {
        if word.len() > suffix.len() + 3
            && let Some(stripped) = word.strip_suffix(suffix)
        {
            return stripped.to_string();
        }
    }
    word.to_string()
}

/// The distinct, stemmed content words of a query, in order.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in words(query) {
        if is_stop_word(&word) {
            continue;
        }
        let stemmed = stem(&word);
        if !terms.contains(&stemmed) {
            terms.push(stemmed);
        }
    }
    terms
}

/// Splits text into sentences: at blank lines and line breaks, and after
/// `.`, `!` or `?` followed by white space.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let mut start = 0;
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let ends = matches!(b, b'.' | b'!' | b'?')
                && bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace());
            if ends {
                push_trimmed(&mut out, &line[start..=i]);
                start = i + 1;
            }
        }
        push_trimmed(&mut out, &line[start..]);
    }
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        let mut sorted = STOP_WORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, STOP_WORDS);
    }

    #[test]
    fn query_terms_drop_function_words_and_stem() {
        assert_eq!(
            query_terms("What does the question mark operator do with errors?"),
            ["question", "mark", "operator", "error"]
        );
    }

    #[test]
    fn splits_sentences() {
        assert_eq!(
            sentences("One. Two? Three!\nFour e.g.x five"),
            ["One.", "Two?", "Three!", "Four e.g.x five"]
        );
    }
}
