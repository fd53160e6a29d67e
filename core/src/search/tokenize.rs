//! The tokenizer: lowercase words split on everything that is not a letter
//! or a digit.

/// The terms of `text`, in order: maximal runs of Unicode alphanumerics,
/// lowercased. Every other character separates words, apostrophes too, so
/// "Lord's" gives `lord` and `s` and a query for `lord` finds it. No
/// stemming and no stop words: `light` does not match `lights`, and `the`
/// is a term like any other (BM25's IDF makes it count for little).
pub fn tokenize(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::tokenize;

    fn toks(s: &str) -> Vec<String> {
        tokenize(s).collect()
    }

    #[test]
    fn splits_and_lowercases() {
        assert_eq!(
            toks("In the beginning God created, the heaven!"),
            ["in", "the", "beginning", "god", "created", "the", "heaven"]
        );
        assert_eq!(toks("the LORD's house"), ["the", "lord", "s", "house"]);
        assert_eq!(toks("ÉLAN vital 42x"), ["élan", "vital", "42x"]);
        assert!(toks("  ,;: -- ").is_empty());
        assert!(toks("").is_empty());
    }
}
