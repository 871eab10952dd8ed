//! The jitter buffer under any arrival pattern: whatever the timestamps,
//! sources and sizes, every tick gives exactly one frame and the buffer
//! stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy::transport::rtp::jitter::JitterBuffer;

const FRAME: usize = 160;
const MAX: usize = 1600;

fuzz_target!(|data: &[u8]| {
    let mut jb = JitterBuffer::new(FRAME, 320, MAX);
    for op in data.chunks(8) {
        if op.len() < 8 || op[0] & 1 == 0 {
            let (frame, _) = jb.pop();
            assert_eq!(frame.len(), FRAME);
            continue;
        }
        let ssrc = (op[1] & 3) as u32;
        let timestamp = u32::from_le_bytes([op[2], op[3], op[4], op[5]]);
        let len = (op[6] as usize % 4 + 1) * 80 * (op[7] as usize % 3 + 1);
        jb.push(ssrc, timestamp, op[0] & 2 != 0, vec![op[7] as i16; len]);
        assert!(jb.depth() <= (MAX + 320 + len) as i64, "depth {}", jb.depth());
    }
});
