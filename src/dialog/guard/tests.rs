//! Unit tests of `guard`.

use super::*;

const HOURS: &str =
    "Our stores are open Monday to Friday, 9 am to 6 pm. We are closed on Saturdays and Sundays.";
const RETURNS: &str = "You can return items within 30 days of purchase with the receipt. Without a receipt we can offer store credit.";
const SHIPPING: &str = "Standard shipping takes 3 to 5 business days. Express shipping takes 1 to 2 business days and costs $12.";
const GIFT: &str = "Gift cards are sold in all our stores and online, in amounts from $10 to $500.";
const PRICE: &str = "We do not offer price matching.";
const SUNDAY: &str = "The outlet store is open every day except Sunday, from 10 am to 4 pm.";

fn ok(answer: &str, question: &str, facts: &[&str]) {
    let v = check(answer, question, facts);
    assert!(
        v.supported,
        "should pass: {answer:?} (q: {question:?}) problems: {:?}",
        v.problems
    );
}

fn bad(answer: &str, question: &str, facts: &[&str]) {
    let v = check(answer, question, facts);
    assert!(
        !v.supported,
        "should be rejected: {answer:?} (q: {question:?})"
    );
}

#[test]
fn rejects_opening_on_a_closed_day() {
    let q = "Are you open on Saturday?";
    bad("Yes, we are open on Saturday.", q, &[HOURS]);
    bad(
        "Yes, we're open on Saturdays from 9 am to 6 pm.",
        q,
        &[HOURS],
    );
    bad("Yes.", q, &[HOURS]);
    bad("We are open Monday to Saturday, 9 am to 6 pm.", q, &[HOURS]);
    bad("We're open every day from 9 to 6.", q, &[HOURS]);
    bad("Saturday we are open from 9 am.", q, &[HOURS]);
    let v = check("Yes, we are open on Saturday.", q, &[HOURS]);
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("Saturday") && p.contains("opposite")),
        "{:?}",
        v.problems
    );
}

#[test]
fn accepts_correct_hours_answers() {
    let q = "Are you open on Saturday?";
    ok("No, we are closed on Saturdays.", q, &[HOURS]);
    ok("No.", q, &[HOURS]);
    ok(
        "We're open Monday to Friday from 9 am to 6 pm.",
        q,
        &[HOURS],
    );
    ok(
        "Sorry, we're closed on weekends. We're open Monday through Friday, 9 to 6.",
        q,
        &[HOURS],
    );
    ok("No, we are not open on Saturday.", q, &[HOURS]);
    ok(
        "Our stores are open 9 a.m. to 6 p.m., Monday to Friday.",
        "what are your hours",
        &[HOURS],
    );
}

#[test]
fn ranges_cover_the_days_inside_them() {
    let q = "Are you open on Wednesday?";
    ok(
        "Yes, we're open on Wednesday from 9 am to 6 pm.",
        q,
        &[HOURS],
    );
    ok("Yes.", q, &[HOURS]);
    bad("No, we are closed on Wednesday.", q, &[HOURS]);
    ok(
        "Yes, we are open Thursday.",
        "open thursday?",
        &["We are open Mon–Fri, 9:00–18:00."],
    );
    ok(
        "We open at 9 am and close at 6 pm on weekdays.",
        "hours?",
        &[HOURS],
    );
}

#[test]
fn except_removes_days_from_every_day() {
    let q = "Is the outlet open on Sunday?";
    bad("Yes, the outlet store is open on Sunday.", q, &[SUNDAY]);
    ok("No, the outlet store is closed on Sunday.", q, &[SUNDAY]);
    ok(
        "Yes, the outlet store is open on Saturday from 10 am to 4 pm.",
        "Is the outlet open Saturday?",
        &[SUNDAY],
    );
}

#[test]
fn times_must_match() {
    let q = "When do you close?";
    bad("We close at 5 pm on weekdays.", q, &[HOURS]);
    bad("We are open Monday to Friday, 9 am to 5 pm.", q, &[HOURS]);
    bad("We open at 8 am.", q, &[HOURS]);
    ok("We close at 6 pm.", q, &[HOURS]);
    ok("We close at 18:00.", q, &[HOURS]);
    bad("We close at 6 am.", q, &[HOURS]);
}

#[test]
fn numbers_prices_and_durations_must_match() {
    ok(
        "You can return items within 30 days with the receipt.",
        "Can I return something after two weeks?",
        &[RETURNS],
    );
    bad(
        "You can return items within 60 days.",
        "how long do I have to return",
        &[RETURNS],
    );
    bad(
        "You can return items within thirty five days.",
        "how long do I have to return",
        &[RETURNS],
    );
    ok(
        "You can return items within thirty days of purchase.",
        "how long do I have to return",
        &[RETURNS],
    );
    ok(
        "Standard shipping takes 3 to 5 business days.",
        "How long does shipping take?",
        &[SHIPPING],
    );
    bad(
        "Standard shipping takes 2 to 4 business days.",
        "How long does shipping take?",
        &[SHIPPING],
    );
    ok(
        "Express shipping costs $12.",
        "how much is express shipping",
        &[SHIPPING],
    );
    bad(
        "Express shipping costs $15.",
        "how much is express shipping",
        &[SHIPPING],
    );
    ok(
        "Gift cards are sold in amounts from $10 to $500.",
        "what amounts do gift cards come in",
        &[GIFT],
    );
}

#[test]
fn negation_against_the_facts_is_rejected() {
    let q = "Do you price match?";
    bad("Yes, we offer price matching.", q, &[PRICE]);
    bad("Yes.", q, &[PRICE]);
    ok("No, we do not offer price matching.", q, &[PRICE]);
    ok("No.", q, &[PRICE]);
    let q = "Do you sell gift cards?";
    ok(
        "Yes, gift cards are sold in our stores and online.",
        q,
        &[GIFT],
    );
    ok("Yes.", q, &[GIFT]);
    bad("No, we don't sell gift cards.", q, &[GIFT]);
    bad("No.", q, &[GIFT]);
}

#[test]
fn another_clause_of_the_fact_does_not_vouch_for_a_negation() {
    // SmolLM2-135M's actual answer to "Do you sell gift cards?".
    let fact = "Gift cards are sold in all our stores and online, in amounts from $10 to $500. Gift cards never expire.";
    let q = "Do you sell gift cards?";
    bad("We do not sell gift cards.", q, &[fact]);
    bad("No.", q, &[fact]);
    ok(
        "Yes, gift cards are sold in all our stores and online.",
        q,
        &[fact],
    );
    ok("Gift cards never expire.", "Do gift cards expire?", &[fact]);
    bad("Gift cards expire.", "Do gift cards expire?", &[fact]);
}

#[test]
fn yes_to_something_no_fact_covers_is_rejected() {
    bad("Yes.", "Do you sell pet food?", &[GIFT, HOURS]);
    bad(
        "Yes, we sell pet food.",
        "Do you sell pet food?",
        &[GIFT, HOURS],
    );
}

#[test]
fn durations_are_not_weekdays_and_the_bot_may_name_itself() {
    let facts = [
        RETURNS,
        "Refunds go back to the original payment method within 5 to 7 business days.",
    ];
    ok(
        "Refunds go back to the original payment method within 5 to 7 business days.",
        "When will I get my refund?",
        &facts,
    );
    let v = check(
        "You can request a refund within 7 days of purchase.",
        "refund?",
        &facts,
    );
    assert!(
        v.problems.iter().all(|p| !p.contains("Monday")),
        "{:?}",
        v.problems
    );
    ok(
        "We're open 7 days a week.",
        "open every day?",
        &["The outlet is open 7 days a week."],
    );
    let named = "Understudy Outfitters stores are open Monday to Friday.";
    assert!(!check(named, "hours?", &[HOURS]).supported);
    assert!(check_with_vocabulary(named, "hours?", &[HOURS], &["Understudy Outfitters"]).supported);
}

#[test]
fn invented_details_are_rejected() {
    bad(
        "Standard shipping is free and takes 3 to 5 business days.",
        "How long does shipping take?",
        &[SHIPPING],
    );
    bad(
        "Gift cards are sold in our stores and never expire.",
        "Do you sell gift cards?",
        &[GIFT],
    );
    bad(
        "You can return items within 30 days, and we also price match.",
        "returns?",
        &[RETURNS],
    );
    bad(
        "Our stores are open in December.",
        "open in december?",
        &[HOURS],
    );
}

#[test]
fn conversational_wrapping_is_fine() {
    ok(
        "Sure, happy to help! Gift cards are sold in all our stores and online.",
        "Do you sell gift cards?",
        &[GIFT],
    );
    ok(
        "Unfortunately we do not offer price matching.",
        "can you match a competitor's price",
        &[PRICE],
    );
}

#[test]
fn tokenizer_reads_times_and_spoken_numbers() {
    let c = Claims::of("Open 9:30 a.m. to six p.m., thirty days, one of our stores");
    assert_eq!(c.times.len(), 2, "{c:?}");
    assert!(c.times[0].compatible(&TimeOfDay {
        minutes12: 9 * 60 + 30,
        pm: Some(false)
    }));
    assert!(c.times[1].compatible(&TimeOfDay {
        minutes12: 6 * 60,
        pm: Some(true)
    }));
    assert_eq!(
        Claims::claimed_numbers("thirty days, one of our stores"),
        [30.0]
    );
}
