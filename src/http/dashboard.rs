//! The NOC dashboard: one page at `/dashboard` (served open; it holds no
//! data) that signs in with the admin token and reads `/admin/dashboard`,
//! everything a person watching the box wants in one JSON document: ready
//! or not and why, calls by ingress against capacity, the cloud bot and its
//! timeline, per-stage latency percentiles of the last turns, latency and
//! calls over time, bot versions (activated through the admin API), the
//! model files and their checks, and the engine workers with their
//! restarts. docs/admin.md describes it.

use super::StatusSource;
use crate::metrics::recent::{self, TurnSample};
use crate::stats::Stat;
use anyhow::Result;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The page's path.
pub const PATH: &str = "/dashboard";

/// The page: HTML, CSS and script in one file, no outside resources (the
/// NOC's browser may reach nothing but the box).
const PAGE: &str = include_str!("dashboard.html");

/// A part of the dashboard that whoever serves knows how to describe (the
/// sync store, the model files), as JSON.
pub type Section = Arc<dyn Fn() -> Result<Value> + Send + Sync>;

/// Where the dashboard's data comes from.
#[derive(Clone)]
pub struct DashboardSources {
    /// The appliance's status (`/status`).
    pub status: StatusSource,
    /// The bot versions in the sync store (`understudy sync status`).
    pub sync: Section,
    /// The model pack's files and their checks.
    pub models: Section,
}

/// `/dashboard`: the page itself.
pub fn page_routes() -> Router {
    Router::new().route(
        PATH,
        get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                PAGE,
            )
                .into_response()
        }),
    )
}

/// p50/p95 of every stage over the recent caller turns.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageLatencies {
    /// End of speech until the endpointer was sure.
    pub endpoint: Stat,
    /// Transcription after the endpoint.
    pub stt: Stat,
    /// Deciding the reply.
    pub dialog: Stat,
    /// Speech output until its first audio.
    pub tts_first_audio: Stat,
    /// Voice-to-voice, flow turns (rules, embeddings, flow prompts).
    pub voice_to_voice_flow: Stat,
    /// Voice-to-voice, LLM turns (an LLM match or a knowledge answer).
    pub voice_to_voice_llm: Stat,
    /// Turns that ended in the safety net.
    pub safety_nets: usize,
}

impl StageLatencies {
    /// Of these turns.
    pub fn of(turns: &[TurnSample]) -> StageLatencies {
        let stat = |f: fn(&TurnSample) -> Option<f64>| Stat::of(turns.iter().filter_map(f));
        let v2v = |llm: bool| {
            Stat::of(
                turns
                    .iter()
                    .filter(|t| t.llm == llm)
                    .filter_map(|t| t.voice_to_voice),
            )
        };
        StageLatencies {
            endpoint: stat(|t| t.endpoint),
            stt: stat(|t| t.stt),
            dialog: stat(|t| t.dialog),
            tts_first_audio: stat(|t| t.tts_first_audio),
            voice_to_voice_flow: v2v(false),
            voice_to_voice_llm: v2v(true),
            safety_nets: turns.iter().filter(|t| t.safety_net).count(),
        }
    }
}

/// A section's JSON, or `{"error": why}`: one part that cannot be read
/// does not blank the whole page.
fn section(source: &Section) -> Value {
    source().unwrap_or_else(|e| json!({ "error": format!("{e:#}") }))
}

/// Everything the page shows, now.
pub fn data(sources: &DashboardSources) -> Value {
    let recent = recent::snapshot();
    json!({
        "status": (sources.status)(),
        "stages": StageLatencies::of(&recent.turns),
        "recent": recent,
        "sync": section(&sources.sync),
        "models": section(&sources.models),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_percentiles_split_flow_and_llm_turns() {
        let turn = |llm, v2v: f64| TurnSample {
            llm,
            stt: Some(v2v / 2.0),
            voice_to_voice: Some(v2v),
            ..Default::default()
        };
        let turns = [
            turn(false, 600.0),
            turn(false, 800.0),
            turn(true, 1500.0),
            TurnSample {
                safety_net: true,
                ..Default::default()
            },
        ];
        let s = StageLatencies::of(&turns);
        assert_eq!(s.voice_to_voice_flow.p50, Some(700.0));
        assert_eq!(s.voice_to_voice_flow.n, 2);
        assert_eq!(s.voice_to_voice_llm.p50, Some(1500.0));
        assert_eq!(s.stt.n, 3);
        assert_eq!(s.endpoint.n, 0);
        assert_eq!(s.safety_nets, 1);
    }

    #[test]
    fn a_section_that_fails_says_why() {
        let failing: Section = Arc::new(|| anyhow::bail!("the store is locked"));
        assert_eq!(section(&failing)["error"], "the store is locked");
    }

    #[test]
    fn the_page_needs_nothing_from_outside_the_box() {
        for outside in ["http://", "https://", "//cdn", "@import"] {
            assert!(!PAGE.contains(outside), "{outside}");
        }
        assert!(PAGE.contains("/admin/dashboard"));
    }
}
