//! Loading the ONNX Runtime shared library safely.
//!
//! With `load-dynamic`, ort 2.0.0-rc.12 opens the library inside a `OnceLock`
//! initialiser; when that fails it builds its error through the very API it is
//! loading, re-enters the same `OnceLock` and deadlocks: a missing or wrong
//! library makes the worker hang for ever instead of failing. So we open the
//! library ourselves first, check that it is ONNX Runtime in a version ort
//! accepts, and only then hand the path to ort.

use ort::logging::LogLevel;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Check `path` and make it the ONNX Runtime that ort uses in this process.
/// Returns the library's version string.
pub fn init(path: &Path) -> Result<String, String> {
    let path = absolute_library_path(path)?;
    let version = probe_version(&path)?;
    let builder = ort::init_from(&path).map_err(|e| {
        format!(
            "cannot load the ONNX Runtime library {}: {e}",
            path.display()
        )
    })?;
    builder
        .with_name("understudy-vad")
        .with_telemetry(false)
        .with_logger(Arc::new(log_to_tracing))
        .commit();
    Ok(version)
}

/// ONNX Runtime logs a hundred INFO lines per session it creates: keep them at
/// `debug` (`UNDERSTUDY_LOG=debug`), warnings and errors at their level.
fn log_to_tracing(level: LogLevel, _category: &str, _id: &str, location: &str, message: &str) {
    match level {
        LogLevel::Verbose => tracing::trace!(target: "onnxruntime", location, "{message}"),
        LogLevel::Info => tracing::debug!(target: "onnxruntime", location, "{message}"),
        LogLevel::Warning => tracing::warn!(target: "onnxruntime", location, "{message}"),
        LogLevel::Error | LogLevel::Fatal => {
            tracing::error!(target: "onnxruntime", location, "{message}")
        }
    }
}

/// libloading's errors say "dlopen failed" and keep dlerror()'s text as the cause.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

fn absolute_library_path(path: &Path) -> Result<PathBuf, String> {
    // ort resolves relative paths against the executable's folder; resolve
    // them against the working directory like every other flag instead.
    std::fs::canonicalize(path).map_err(|e| {
        format!(
            "ONNX Runtime library {} not found ({e}); pass --ort-lib with the path of \
             libonnxruntime.so.* from the model pack (`understudy models fetch`)",
            path.display()
        )
    })
}

/// Open the library and read its version the way ort will, without ort.
fn probe_version(path: &Path) -> Result<String, String> {
    let cannot = |why: String| {
        format!(
            "{} is not a usable ONNX Runtime library ({why}); pass --ort-lib with \
             libonnxruntime.so.* from the model pack (`understudy models fetch`)",
            path.display()
        )
    };
    // SAFETY: loading a shared library runs its initialisers; ort is about to
    // load the same file anyway.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| cannot(with_causes(&e)))?;
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: the symbol has this signature in every ONNX Runtime release.
    let get_api_base = unsafe { lib.get::<GetApiBase>(b"OrtGetApiBase") }
        .map_err(|_| cannot("it has no OrtGetApiBase symbol".into()))?;
    // SAFETY: OrtGetApiBase returns a pointer to a static struct (or null).
    let base = unsafe { get_api_base() };
    if base.is_null() {
        return Err(cannot("OrtGetApiBase returned null".into()));
    }
    // SAFETY: the version string is static, NUL-terminated and never freed.
    let version = unsafe { CStr::from_ptr(((*base).GetVersionString)()) }
        .to_string_lossy()
        .into_owned();
    let minor = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    if minor < ort::MINOR_VERSION {
        return Err(cannot(format!(
            "version {version} is too old; this build needs ONNX Runtime 1.{} or newer",
            ort::MINOR_VERSION
        )));
    }
    Ok(version)
}
