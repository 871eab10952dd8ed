//! Unit tests of `text`.

use super::*;

fn spoken(s: &str) -> Vec<String> {
    plan(s).into_iter().map(|c| c.spoken).collect()
}

#[test]
fn sentences_split_at_ends_but_not_at_abbreviations_or_decimals() {
    let s = split_sentences(
        "Dr. Smith is in. Rates rose 3.5 percent! Really? Yes; e.g. this one. Call J. Doe now.",
    );
    assert_eq!(
        s,
        [
            "Dr. Smith is in.",
            "Rates rose 3.5 percent!",
            "Really?",
            "Yes;",
            "e.g. this one.",
            "Call J. Doe now."
        ]
    );
    assert_eq!(
        split_sentences("We open at 9 a.m. Call us then."),
        ["We open at 9 a.m.", "Call us then."]
    );
    assert_eq!(
        split_sentences("From 9 a.m. to 5 p.m. daily."),
        ["From 9 a.m. to 5 p.m. daily."]
    );
    assert_eq!(
        split_sentences("Wait... \"Done.\" Next\nline"),
        ["Wait...", "\"Done.\"", "Next", "line"]
    );
}

#[test]
fn long_sentences_are_cut_at_commas() {
    let long = "Our store on Main Street is open every weekday from nine in the morning until five in the evening, \
                and on Saturdays we open a little later, at ten, and close at four in the afternoon for inventory.";
    let parts = split_long(long);
    assert!(parts.len() >= 2, "{parts:?}");
    assert!(
        parts.iter().all(|p| p.chars().count() <= MAX_CHUNK_CHARS),
        "{parts:?}"
    );
    assert_eq!(parts.join(" "), long);
}

#[test]
fn times_days_and_ranges_read_naturally() {
    assert_eq!(
        normalize("We open Mon-Fri 9:00-17:30."),
        "We open Monday to Friday 9 o'clock to 5 30 PM."
    );
    assert_eq!(normalize("Sat 10am-2pm"), "Saturday 10 AM to 2 PM");
    assert_eq!(normalize("at 10:05 a.m. sharp"), "at 10 oh 5 AM sharp");
    assert_eq!(normalize("Sat/Sun closed"), "Saturday and Sunday closed");
    assert_eq!(normalize("The score was 3-4."), "The score was 3-4.");
}

#[test]
fn money_codes_and_phone_numbers_are_spoken_not_garbled() {
    assert_eq!(
        normalize("It costs $5.99 or $1."),
        "It costs 5 dollars and 99 cents or 1 dollar."
    );
    assert_eq!(
        normalize("Only €0.50, or $1.5 million."),
        "Only 50 cents, or 1.5 million dollars."
    );
    assert_eq!(
        normalize("That is $12,500, then."),
        "That is 12500 dollars, then."
    );
    assert_eq!(
        normalize("Ticket #42 and #123."),
        "Ticket number 42 and number 1 2 3."
    );
    assert_eq!(normalize("We open at 9 a.m."), "We open at 9 AM.");
    assert_eq!(
        normalize("From 9 a.m. to 5 p.m. daily"),
        "From 9 AM to 5 PM daily"
    );
    assert_eq!(
        normalize("Order #1234567 shipped."),
        "Order number 1 2 3, 4 5 6 7 shipped."
    );
    assert_eq!(normalize("Your code is 48213."), "Your code is 4 8 2, 1 3.");
    assert_eq!(
        normalize("Call 555-123-4567."),
        "Call 5 5 5, 1 2 3, 4 5 6 7."
    );
    assert_eq!(
        normalize("In 2024 we sold 1,234,567 units."),
        "In 2024 we sold 1,234,567 units."
    );
    assert_eq!(
        normalize("We are here 24/7 at 1/2 price."),
        "We are here twenty-four seven at one half price."
    );
}

#[test]
fn markdown_and_emoji_are_dropped() {
    assert_eq!(
        normalize("**Hours:** open 👍 now → `ok`"),
        "Hours: open now ok"
    );
    assert_eq!(
        spoken("- first item\n- second item"),
        ["first item", "second item"]
    );
}

#[test]
fn ssml_subset_spells_substitutes_and_pauses() {
    let chunks = plan(
        r#"<speak>Your order <say-as interpret-as="digits">A1234</say-as> is ready.<break time="500ms"/>Call <sub alias="customer service">CS</sub> at <say-as interpret-as="telephone">555 0100</say-as>. Q&amp;A.</speak>"#,
    );
    let spoken: Vec<&str> = chunks.iter().map(|c| c.spoken.as_str()).collect();
    assert_eq!(
        spoken,
        [
            "Your order eigh 1 2, 3 4 is ready.",
            "Call customer service at 5 5 5, 0 1 0 0.",
            "Q&A."
        ]
    );
    assert_eq!(chunks[0].text, "Your order A1234 is ready.");
    assert_eq!(chunks[1].pause_before_ms, 500);
    assert_eq!(chunks[2].pause_before_ms, 0);
}

#[test]
fn nothing_speakable_gives_no_chunks() {
    assert!(plan("").is_empty());
    assert!(plan(" ... !? 🙂 ").is_empty());
    assert_eq!(group_lengths(10), [3, 3, 4]);
    assert_eq!(group_lengths(8), [3, 3, 2]);
}
