//! Listening: caller audio through the VAD (Silero, streaming) into the
//! endpointer, speculative transcription at pauses, and barge-in while the
//! bot speaks.

use super::*;

impl Session {
    pub(super) async fn on_audio(&mut self, samples: &[i16]) {
        if matches!(self.state, CallState::Transferring | CallState::Ended) {
            return;
        }
        self.audio.push(samples);
        self.vad_pending.extend_from_slice(samples);
        while self.vad_pending.len() >= VAD_CHUNK_SAMPLES {
            let chunk: Vec<i16> = self.vad_pending.drain(..VAD_CHUNK_SAMPLES).collect();
            let prob = match self.vad(&chunk).await {
                Ok(p) => p,
                Err(e) => {
                    self.safety_net(e, None).await;
                    return;
                }
            };
            self.on_vad(prob).await;
            if matches!(self.state, CallState::Transferring | CallState::Ended) {
                return;
            }
        }
    }

    pub(super) async fn vad(&mut self, chunk: &[i16]) -> Result<f32, EngineError> {
        let vad = self
            .setup
            .engines
            .vad
            .as_ref()
            .ok_or_else(|| EngineError::Unavailable {
                engine: "vad",
                reason: "not started".into(),
            })?;
        let (probs, state) = vad.probs(chunk, self.vad_state.take()).await?;
        self.vad_state = Some(state);
        Ok(probs.first().copied().unwrap_or(0.0))
    }

    pub(super) async fn on_vad(&mut self, prob: f32) {
        // Barge-in: a separate, stricter endpointer watches speech over playback.
        if self.state == CallState::Speaking && self.listen.barge_in {
            if let Some(EndpointEvent::SpeechStarted { .. }) = self.barge_in.push(prob) {
                self.on_barge_in().await;
            }
        } else {
            self.barge_in.reset();
            let _ = self.barge_in.push(0.0);
        }
        if self.state == CallState::Speaking && !self.listen.barge_in {
            // A prompt that may not be interrupted: what the caller says over
            // it is not heard (as in Dialogflow and Lex). The position still
            // advances, so later turns find their audio.
            self.endpointer.reset();
            let _ = self.endpointer.push(0.0);
            return;
        }
        let Some(event) = self.endpointer.push(prob) else {
            return;
        };
        let event = match event {
            EndpointEvent::Paused { start, end } if self.state == CallState::Listening => {
                self.start_speculative(start, end);
                self.end_of_turn_at_pause(start).await.unwrap_or(event)
            }
            other => other,
        };
        match event {
            EndpointEvent::SpeechStarted { start } => {
                tracing::debug!(call = %self.call_id, start, "speech started");
                self.no_input_deadline = None;
            }
            // The speculative transcription and Smart Turn started above.
            EndpointEvent::Paused { .. } => {}
            EndpointEvent::Resumed { .. } => {
                if let Some((_, task)) = self.speculative.take() {
                    task.abort();
                    metrics::counter_inc(
                        "understudy_speculative_stt_total",
                        &[("result", "discarded")],
                    );
                }
            }
            EndpointEvent::SpeechEnded { start, end } => {
                let detected_at = Instant::now();
                let lag = crate::audio::samples_to_ms(
                    (self.endpointer.position() - end) as usize,
                    SAMPLE_RATE,
                );
                let speech_end = detected_at
                    .checked_sub(Duration::from_secs_f64(lag / 1000.0))
                    .unwrap_or(detected_at);
                let speculative = match self.speculative.take() {
                    Some((spec_end, task)) if spec_end == end => {
                        metrics::counter_inc(
                            "understudy_speculative_stt_total",
                            &[("result", "kept")],
                        );
                        Some(task)
                    }
                    Some((_, task)) => {
                        task.abort();
                        None
                    }
                    None => None,
                };
                let input = TurnInput::Speech {
                    audio: self.audio.utterance(start, end),
                    speech_ms: (
                        crate::audio::samples_to_ms(start as usize, SAMPLE_RATE),
                        crate::audio::samples_to_ms(end as usize, SAMPLE_RATE),
                    ),
                    speech_end,
                    endpoint_ms: lag,
                    speculative,
                };
                self.run_turn(input).await;
            }
        }
    }

    pub(super) fn start_speculative(&mut self, start: u64, end: u64) {
        let Some(stt) = self.setup.engines.stt.clone() else {
            return;
        };
        if let Some((_, old)) = self.speculative.take() {
            old.abort();
        }
        let audio = self.audio.utterance(start, end);
        let prompt = self.setup.settings.stt_prompt.clone();
        let task = tokio::spawn(async move { stt.transcribe(&audio, prompt.as_deref()).await });
        self.speculative = Some((end, task));
    }

    pub(super) async fn on_barge_in(&mut self) {
        tracing::info!(call = %self.call_id, "barge-in: stopping playback");
        metrics::counter_inc("understudy_barge_in_total", &[]);
        if let TurnStage::Speaking {
            task: Some(task), ..
        } = std::mem::replace(&mut self.work, TurnStage::Idle)
        {
            task.abort();
        }
        self.emit(SessionAction::ClearPlayout).await;
        if let Some(mut report) = self.pending_report.take() {
            report.barged_in = true;
            self.emit(SessionAction::Report(Box::new(report))).await;
        }
        self.set_state(CallState::Listening).await;
    }
}
