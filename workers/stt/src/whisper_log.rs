//! whisper.cpp and ggml log lines, routed into `tracing`.
//!
//! By default they go straight to stderr at their own levels, and the VAD logs
//! several INFO lines per request. Here INFO becomes `debug` (set
//! `UNDERSTUDY_LOG=debug` to see them), WARN and ERROR keep their level, and
//! the first ERROR line is kept so that a failed model load can say why (the
//! first is the cause; later ones only say that loading failed). A request
//! that is cancelled stops whisper.cpp through its abort callback, which it
//! reports as an ERROR ("failed to encode"); after [`aborted`] such lines are
//! logged at debug, since nothing failed.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use whisper_rs::whisper_rs_sys as sys;

static FIRST_ERROR: Mutex<Option<String>> = Mutex::new(None);
static ABORTED: AtomicBool = AtomicBool::new(false);

/// The running whisper.cpp call is being stopped on purpose (a cancelled
/// request): its ERROR lines until the next [`clear`] are not failures.
pub fn aborted() {
    ABORTED.store(true, Ordering::Relaxed);
}

/// Install the hook; call once, before loading any model.
pub fn install() {
    // SAFETY: the callback is a plain function valid for the whole process.
    unsafe { sys::whisper_log_set(Some(on_log), std::ptr::null_mut()) };
}

/// Forget earlier ERROR lines; call before a whisper.cpp call that may fail.
pub fn clear() {
    ABORTED.store(false, Ordering::Relaxed);
    if let Ok(mut first) = FIRST_ERROR.lock() {
        *first = None;
    }
}

/// Why the whisper.cpp call that returned `error` failed: its first ERROR line
/// since [`clear`] (whisper-rs errors are bare, e.g. "null pointer"), else `error`.
pub fn reason(error: impl std::fmt::Display) -> String {
    FIRST_ERROR
        .lock()
        .ok()
        .and_then(|mut e| e.take())
        .unwrap_or_else(|| error.to_string())
}

unsafe extern "C" fn on_log(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: whisper.cpp passes a NUL-terminated string valid during the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    match level {
        sys::ggml_log_level_GGML_LOG_LEVEL_ERROR if ABORTED.load(Ordering::Relaxed) => {
            tracing::debug!(target: "whisper.cpp", "{text} (the request was cancelled)")
        }
        sys::ggml_log_level_GGML_LOG_LEVEL_ERROR => {
            tracing::error!(target: "whisper.cpp", "{text}");
            if let Ok(mut first) = FIRST_ERROR.lock() {
                first.get_or_insert_with(|| text.to_string());
            }
        }
        sys::ggml_log_level_GGML_LOG_LEVEL_WARN => tracing::warn!(target: "whisper.cpp", "{text}"),
        // CONT continues the previous line (progress dots while loading).
        sys::ggml_log_level_GGML_LOG_LEVEL_CONT => tracing::trace!(target: "whisper.cpp", "{text}"),
        _ => tracing::debug!(target: "whisper.cpp", "{text}"),
    }
}
