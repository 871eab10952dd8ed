//! Word error rate: transcripts compared as words.

use crate::dialog::text::is_filler;

/// Words for WER: lower case, no punctuation, digits one by one, number
/// words as digits, hesitations ("um", "uh") dropped.
pub fn normalize_words(text: &str) -> Vec<String> {
    const NUMBERS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut words = Vec::new();
    for word in cleaned.split_whitespace() {
        let word = word.trim_matches('\'');
        if word.chars().all(|c| c.is_ascii_digit()) {
            words.extend(word.chars().map(|c| c.to_string()));
        } else if let Some(d) = NUMBERS.iter().position(|n| *n == word) {
            words.push(d.to_string());
        } else if word == "oh" || word.is_empty() || is_filler(word) {
            // "oh" is a zero only between digits; alone it is a hesitation too.
            if word == "oh"
                && words
                    .last()
                    .is_some_and(|w: &String| w.len() == 1 && w.chars().all(|c| c.is_ascii_digit()))
            {
                words.push("0".into());
            }
        } else {
            words.push(word.to_string());
        }
    }
    words
}

/// Word-level edit distance between reference and hypothesis.
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if r == h {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[hypothesis.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wer_normalizes_numbers_punctuation_and_hesitations() {
        let r = normalize_words("Can you check the status of order 4 8 2 1 3?");
        let h = normalize_words("can you check the status of order four eight two one three");
        assert_eq!(word_errors(&r, &h), 0);
        let h2 = normalize_words("Can you check status of order 48213");
        assert_eq!(word_errors(&r, &h2), 1);
        assert_eq!(
            word_errors(&normalize_words("a b c"), &normalize_words("x b c d")),
            2
        );
        assert_eq!(
            normalize_words("Um, so, uh, seven oh oh three one"),
            ["so", "7", "0", "0", "3", "1"]
        );
        assert_eq!(normalize_words("Oh, hi"), ["hi"]);
    }
}
