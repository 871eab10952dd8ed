//! Caller audio for SIPp to play: espeak-ng speech, WAV files, and RTP
//! captures (pcap) of G.711 packets with RFC 4733 keys.

use super::*;

/// Speech for `text` at 8 kHz, as a telephone caller would send it.
pub fn say(text: &str, dir: &Path) -> Vec<i16> {
    say_as(text, dir, "en-us")
}

/// Speech for `text` at 8 kHz in espeak-ng's `voice` (e.g. `en-gb` for a
/// cloud bot that must not sound like the caller, nor like Piper).
pub fn say_as(text: &str, dir: &Path, voice: &str) -> Vec<i16> {
    let raw = dir.join("say-raw.wav");
    let wav = dir.join("say-8k.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "140", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .unwrap();
    assert!(ok.success(), "espeak-ng failed");
    let ok = Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(&wav)
        .status()
        .unwrap();
    assert!(ok.success(), "sox failed");
    let mut reader = hound::WavReader::open(&wav).unwrap();
    reader.samples::<i16>().map(|s| s.unwrap()).collect()
}

/// A softphone caller's WAV (`dir/caller.wav`): quiet for `quiet_ms` (the
/// greeting), `question`, then quiet for `after_ms` while the bot answers
/// (baresip hangs up when the file ends).
pub fn caller_wav(dir: &Path, quiet_ms: usize, question: &str, after_ms: usize) -> PathBuf {
    let quiet = |ms: usize| vec![0i16; ms * 8];
    let mut caller = quiet(quiet_ms);
    caller.extend(say(question, dir));
    caller.extend(quiet(after_ms));
    let wav = dir.join("caller.wav");
    write_wav(&wav, &caller);
    wav
}

/// Write 8 kHz mono s16 audio as WAV.
pub fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// An RTP stream as SIPp plays it: packets with their send times.
pub struct RtpCapture {
    sender: RtpSender,
    at: Duration,
    packets: Vec<(Duration, Vec<u8>)>,
}

impl Default for RtpCapture {
    fn default() -> Self {
        Self::new()
    }
}

impl RtpCapture {
    pub fn new() -> Self {
        RtpCapture {
            sender: RtpSender::new(),
            at: Duration::ZERO,
            packets: vec![],
        }
    }

    /// PCMU packets of 20 ms for `samples` (8 kHz).
    pub fn audio(&mut self, samples: &[i16]) -> &mut Self {
        self.sender.mark_talkspurt();
        for chunk in samples.chunks(160) {
            let mut frame = chunk.to_vec();
            frame.resize(160, 0);
            let packet = self.sender.packet(0, &Law::Mu.encode(&frame), 160);
            self.packets.push((self.at, packet));
            self.at += Duration::from_millis(20);
        }
        self
    }

    /// Nothing sent for a while (DTX); the RTP clock moves on.
    pub fn pause(&mut self, ms: u64) -> &mut Self {
        self.sender.skip((ms * 8) as u32);
        self.at += Duration::from_millis(ms);
        self
    }

    /// Keys as RFC 4733 events (payload type 101), 300 ms apart.
    pub fn keys(&mut self, keys: &str) -> &mut Self {
        for key in keys.chars() {
            let start = self.sender.timestamp();
            let packets = dtmf::key_packets(key, 100).unwrap();
            for (i, payload) in packets.iter().enumerate() {
                let packet = self.sender.packet_at(101, payload, start, i == 0);
                self.packets.push((self.at, packet));
                // The three end packets go out together.
                if i < packets.len() - 3 {
                    self.at += Duration::from_millis(20);
                    self.sender.skip(160);
                }
            }
            self.pause(300);
        }
        self
    }

    /// A pcap file (Ethernet/IPv4/UDP) SIPp's play_pcap_audio reads.
    pub fn write_pcap(&self, path: &Path) {
        let mut out = Vec::new();
        // Global header: magic, v2.4, GMT, accuracy, snaplen, Ethernet.
        out.extend(0xa1b2c3d4u32.to_le_bytes());
        out.extend(2u16.to_le_bytes());
        out.extend(4u16.to_le_bytes());
        out.extend(0i32.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(65535u32.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        for (at, rtp) in &self.packets {
            let udp_len = 8 + rtp.len();
            let mut frame = vec![0u8; 12];
            frame.extend([0x08, 0x00]);
            // IPv4 header (no checksum: SIPp does not check it).
            frame.extend([0x45, 0]);
            frame.extend(((20 + udp_len) as u16).to_be_bytes());
            frame.extend([0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
            frame.extend(6000u16.to_be_bytes());
            frame.extend(6002u16.to_be_bytes());
            frame.extend((udp_len as u16).to_be_bytes());
            frame.extend([0, 0]);
            frame.extend(rtp);
            out.extend((at.as_secs() as u32).to_le_bytes());
            out.extend(at.subsec_micros().to_le_bytes());
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend(frame);
        }
        std::fs::write(path, out).unwrap();
    }

    pub fn duration(&self) -> Duration {
        self.at
    }

    /// A network that jitters and loses packets, as `tc netem delay 0
    /// <max> loss <percent>` would: each packet leaves up to `max` late
    /// (uniformly, so packets also overtake each other) and `loss_percent`
    /// of them never. Deterministic per `seed`. Returns the longest gap
    /// between two packets on the wire and how many were lost.
    pub fn jitter(&mut self, max: Duration, loss_percent: f64, seed: u64) -> (Duration, usize) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let before = self.packets.len();
        let mut packets: Vec<(Duration, Vec<u8>)> = std::mem::take(&mut self.packets)
            .into_iter()
            .filter_map(|(at, p)| {
                let kept = rng.random::<f64>() * 100.0 >= loss_percent;
                kept.then(|| (at + max.mul_f64(rng.random::<f64>()), p))
            })
            .collect();
        packets.sort_by_key(|(at, _)| *at);
        let lost = before - packets.len();
        let longest = packets
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default();
        self.packets = packets;
        (longest, lost)
    }
}
