//! Text normalisation and number words, shared by recognition, slot filling,
//! knowledge retrieval and the guard so that they all see words the same way.

/// Lowercase words and digit strings: apostrophes dropped ("what's" ->
/// "whats"), every other non-alphanumeric character a separator, so
/// "one-two-three" and "4,8,2" split into their parts.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            cur.extend(ch.to_lowercase());
        } else if ch == '\'' || ch == '\u{2019}' {
            // inside a word: "don't" -> "dont"
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `words` joined by single spaces: the form phrases are compared in.
pub fn normalize(text: &str) -> String {
    words(text).join(" ")
}

/// Hesitations that carry no meaning in a transcript.
pub fn is_filler(word: &str) -> bool {
    matches!(
        word,
        "uh" | "um" | "umm" | "uhm" | "er" | "erm" | "ah" | "hmm" | "mm" | "mhm"
    )
}

/// Words that open a spoken sentence without adding to its meaning
/// ("yeah, so, hi, ..."), dropped at the start of a clause.
fn is_discourse_marker(word: &str) -> bool {
    is_filler(word)
        || matches!(
            word,
            "so" | "yeah"
                | "yes"
                | "well"
                | "hi"
                | "hello"
                | "hey"
                | "okay"
                | "ok"
                | "right"
                | "alright"
                | "oh"
        )
}

/// The clauses of a spoken sentence, for matching each on its own: split at
/// punctuation and at "but", "and", "so"; hesitations dropped, discourse
/// markers dropped at the start, clauses of one word left out. A caller's
/// "the zip broke, I want to send it back" says its request in one clause,
/// and the whole sentence's embedding is diluted by the other. Empty when
/// the sentence is a single clause already.
pub fn clauses(text: &str) -> Vec<String> {
    let mut out = vec![];
    for part in text.split([',', '.', ';', ':', '!', '?']) {
        let mut clause: Vec<&str> = vec![];
        for word in part.split_whitespace() {
            if matches!(normalize(word).as_str(), "but" | "and" | "so") {
                push_clause(&mut out, std::mem::take(&mut clause));
            } else if !is_filler(&normalize(word)) {
                clause.push(word);
            }
        }
        push_clause(&mut out, clause);
    }
    if out.len() == 1 && out[0] == text.trim() {
        out.clear();
    }
    out
}

fn push_clause(out: &mut Vec<String>, mut clause: Vec<&str>) {
    while clause
        .first()
        .is_some_and(|w| is_discourse_marker(&normalize(w)))
    {
        clause.remove(0);
    }
    if clause.len() >= 2 {
        out.push(clause.join(" "));
    }
}

/// How an answer opens: "Yes, ..." / "That's right" affirms the question,
/// "No, ..." / "Nope" / "Not really" denies it; `None` when it does neither.
/// Hesitations before the first word are skipped.
pub fn yes_or_no(answer: &str) -> Option<bool> {
    let said: Vec<String> = words(answer)
        .into_iter()
        .filter(|w| !is_filler(w) && w != "oh" && w != "well")
        .collect();
    let first = said.first()?.as_str();
    let second = said.get(1).map_or("", String::as_str);
    match (first, second) {
        (
            "yes" | "yeah" | "yep" | "yup" | "sure" | "absolutely" | "certainly" | "correct"
            | "exactly" | "definitely",
            _,
        ) => Some(true),
        ("thats", "right" | "correct" | "it") | ("right", "") => Some(true),
        ("no" | "nope" | "nah" | "neither", _) | ("not", "really" | "quite") => Some(false),
        _ => None,
    }
}

/// Words that negate what follows ("I don't want an agent").
pub fn is_negator(word: &str) -> bool {
    matches!(
        word,
        "not"
            | "no"
            | "never"
            | "dont"
            | "doesnt"
            | "didnt"
            | "isnt"
            | "arent"
            | "wasnt"
            | "werent"
            | "wont"
            | "cant"
            | "cannot"
            | "couldnt"
            | "shouldnt"
            | "neither"
            | "nor"
    )
}

const STOPWORDS: &[&str] = &[
    "a", "about", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by",
    "can", "could", "did", "do", "does", "for", "from", "get", "got", "had", "has", "have",
    "hello", "hi", "how", "i", "id", "if", "im", "in", "into", "is", "it", "its", "ive", "just",
    "know", "like", "ll", "me", "my", "of", "on", "one", "or", "our", "ours", "please", "s", "so",
    "some", "that", "thats", "the", "their", "them", "then", "there", "theres", "these", "they",
    "this", "to", "up", "us", "was", "we", "well", "were", "weve", "what", "whats", "when",
    "where", "which", "who", "will", "with", "would", "yes", "you", "youll", "your", "youre",
    "yours", "want", "need", "tell", "okay", "ok", "hey", "there", "also", "too", "very", "really",
    "should", "may", "might", "must", "shall", "here", "out", "than", "only", "much", "many",
    "more", "most", "other", "such", "same", "own", "each", "both", "few", "until", "while",
    "again", "once", "because", "through", "during", "before", "after", "above", "below", "off",
    "over", "under", "further", "why", "ve", "re", "d", "t",
];

/// True for words that carry no meaning for matching: stopwords and fillers ("um", "uh").
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.contains(&word) || is_filler(word)
}

/// A light stem so "stores"/"store" and "days"/"day" compare equal: plural
/// endings only, which is all that phrase overlap needs.
pub fn stem(word: &str) -> String {
    let w = word;
    if w.len() > 4 && w.ends_with("ies") {
        return format!("{}y", &w[..w.len() - 3]);
    }
    if w.len() > 3
        && w.ends_with('s')
        && !w.ends_with("ss")
        && !w.ends_with("us")
        && !w.ends_with("is")
    {
        return w[..w.len() - 1].to_string();
    }
    w.to_string()
}

/// Stemmed content words (no stopwords, no negators): what a sentence is about.
pub fn content_words(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| !is_stopword(w) && !is_negator(w))
        .map(|w| stem(&w))
        .collect()
}

/// What a number word contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberWord {
    /// zero..nine
    Unit(u64),
    /// ten..nineteen
    Teen(u64),
    /// twenty, thirty, ... ninety
    Tens(u64),
    /// "hundred": multiplies what came before.
    Hundred,
    /// "thousand": multiplies what came before.
    Thousand,
}

/// The value of a spoken number word ("seven", "forty", "hundred"), `None` for any other word.
pub fn number_word(word: &str) -> Option<NumberWord> {
    use NumberWord::*;
    Some(match word {
        "zero" => Unit(0),
        "one" => Unit(1),
        "two" => Unit(2),
        "three" => Unit(3),
        "four" => Unit(4),
        "five" => Unit(5),
        "six" => Unit(6),
        "seven" => Unit(7),
        "eight" => Unit(8),
        "nine" => Unit(9),
        "ten" => Teen(10),
        "eleven" => Teen(11),
        "twelve" => Teen(12),
        "thirteen" => Teen(13),
        "fourteen" => Teen(14),
        "fifteen" => Teen(15),
        "sixteen" => Teen(16),
        "seventeen" => Teen(17),
        "eighteen" => Teen(18),
        "nineteen" => Teen(19),
        "twenty" => Tens(20),
        "thirty" => Tens(30),
        "forty" | "fourty" => Tens(40),
        "fifty" => Tens(50),
        "sixty" => Tens(60),
        "seventy" => Tens(70),
        "eighty" => Tens(80),
        "ninety" => Tens(90),
        "hundred" => Hundred,
        "thousand" => Thousand,
        _ => return None,
    })
}

/// Folds number words into values the way people speak them: digit by digit
/// ("four eight two" -> 4, 8, 2), in pairs ("forty eight thirteen" -> 48, 13)
/// or as cardinals ("four hundred and twelve" -> 412). Each value is one
/// group; callers concatenate groups (order numbers) or keep them (the guard).
#[derive(Default)]
pub struct NumberFolder {
    groups: Vec<u64>,
    total: u64,
    current: u64,
    last: Option<NumberWord>,
    open: bool,
}

impl NumberFolder {
    /// Feed one word; false when it is not part of a spoken number (the
    /// caller decides whether that ends the number).
    pub fn push(&mut self, word: &str) -> bool {
        use NumberWord::*;
        if word == "and" && matches!(self.last, Some(Hundred | Thousand)) {
            return true;
        }
        let Some(w) = number_word(word) else {
            return false;
        };
        let joins = self.open
            && match (self.last, w) {
                // "forty eight"
                (Some(Tens(_)), Unit(u)) => u != 0,
                // "two hundred (and) thirteen", "four thousand two"
                (Some(Hundred | Thousand), Unit(_) | Teen(_) | Tens(_)) => true,
                // "four hundred", "nineteen hundred", "forty eight thousand"
                (Some(Unit(_) | Teen(_) | Tens(_)), Hundred | Thousand) => true,
                (Some(Hundred), Thousand) => true,
                _ => false,
            };
        if !joins {
            self.flush();
            self.open = true;
        }
        match w {
            Unit(v) | Teen(v) | Tens(v) => self.current += v,
            Hundred => self.current = self.current.max(1) * 100,
            Thousand => {
                self.total = (self.total + self.current.max(1)) * 1000;
                self.current = 0;
            }
        }
        self.last = Some(w);
        true
    }

    /// Close the number being spoken, if any.
    pub fn flush(&mut self) {
        if self.open {
            self.groups.push(self.total + self.current);
        }
        self.total = 0;
        self.current = 0;
        self.last = None;
        self.open = false;
    }

    /// True while a number is being spoken (a number word came last).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Close the current number and hand over every value so far.
    pub fn drain(&mut self) -> Vec<u64> {
        self.flush();
        std::mem::take(&mut self.groups)
    }

    /// Close the current number and return every value, in spoken order.
    pub fn finish(mut self) -> Vec<u64> {
        self.flush();
        self.groups
    }
}

/// Digits as TTS should read them one by one: "48213" -> "4 8 2 1 3".
pub fn spaced_digits(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() * 2);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

/// Cosine similarity of two unit vectors (the embed worker returns unit length).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(text: &str) -> Vec<u64> {
        let mut f = NumberFolder::default();
        for w in words(text) {
            assert!(f.push(&w), "{w} is not a number word");
        }
        f.finish()
    }

    #[test]
    fn words_split_and_lowercase() {
        assert_eq!(
            words("What's my Order-Status? #48213!"),
            ["whats", "my", "order", "status", "48213"]
        );
        assert_eq!(normalize("  One-two, THREE "), "one two three");
    }

    #[test]
    fn number_words_fold_like_speech() {
        assert_eq!(fold("four eight two one three"), [4, 8, 2, 1, 3]);
        assert_eq!(fold("forty eight two thirteen"), [48, 2, 13]);
        assert_eq!(fold("four hundred and twelve"), [412]);
        assert_eq!(fold("forty eight thousand two hundred thirteen"), [48213]);
        assert_eq!(fold("twenty twenty"), [20, 20]);
        assert_eq!(fold("nineteen hundred"), [1900]);
        assert_eq!(fold("thirty"), [30]);
    }

    #[test]
    fn stems_plurals_only() {
        assert_eq!(stem("stores"), "store");
        assert_eq!(stem("deliveries"), "delivery");
        assert_eq!(stem("address"), "address");
        assert_eq!(stem("bus"), "bus");
        assert_eq!(
            content_words("Are you open on Saturdays?"),
            ["open", "saturday"]
        );
    }

    #[test]
    fn answers_open_with_yes_or_no() {
        assert_eq!(yes_or_no("Yes, we are open on Sundays."), Some(true));
        assert_eq!(yes_or_no("Um, yeah, that's it"), Some(true));
        assert_eq!(yes_or_no("That's right."), Some(true));
        assert_eq!(yes_or_no("Nope."), Some(false));
        assert_eq!(yes_or_no("Not really"), Some(false));
        assert_eq!(yes_or_no("We are open on Sundays."), None);
        assert_eq!(yes_or_no(""), None);
    }

    #[test]
    fn spoken_sentences_split_into_clauses() {
        assert_eq!(
            clauses("Um, so, yeah, I'm wondering what happened to the thing I ordered."),
            ["I'm wondering what happened to the thing I ordered"]
        );
        assert_eq!(
            clauses("The zipper broke after two days, I want to bring it back."),
            ["The zipper broke after two days", "I want to bring it back"]
        );
        assert_eq!(
            clauses("I ordered two by mistake and want to give one back"),
            ["I ordered two by mistake", "want to give one back"]
        );
        // One clause already: nothing to add.
        assert!(clauses("where is my order").is_empty());
        assert!(clauses("yes").is_empty());
    }

    #[test]
    fn digits_are_spaced_for_speech() {
        assert_eq!(spaced_digits("48213"), "4 8 2 1 3");
    }
}
