//! Where the CLI writes: stdout (results, JSON for scripts) and stderr (progress, messages).
//! The binary writes to the process's streams; tests capture both in memory.
//!
//! A closed stdout (`sso-fanout plan | head -1`) is not an error: further output is dropped
//! quietly and the command keeps its exit code, as other command-line tools do.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

type Writer = Arc<Mutex<Box<dyn Write + Send>>>;

/// One output stream, cheap to clone into a background task (the progress reporter).
#[derive(Clone)]
pub struct Sink {
    writer: Writer,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink {
    fn new(w: impl Write + Send + 'static) -> Sink {
        Sink { writer: Arc::new(Mutex::new(Box::new(w))), closed: Arc::default() }
    }

    /// Writes `text`; a reader that went away (broken pipe) silences the stream for good.
    pub fn write(&self, text: &str) {
        use std::sync::atomic::Ordering;
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.write_all(text.as_bytes()).and_then(|_| w.flush()).is_err() {
            // The reader went away (broken pipe) or the stream failed: this output is over.
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    pub fn line(&self, text: impl AsRef<str>) {
        let mut t = text.as_ref().to_string();
        t.push('\n');
        self.write(&t);
    }
}

/// The streams a command writes to, and how the user interrupts it.
pub struct Io {
    pub out: Sink,
    pub err: Sink,
    /// Whether stderr is a terminal: a live progress bar there, periodic progress lines in a log.
    pub err_is_terminal: bool,
    /// Cancelled to interrupt a run as Ctrl-C does; `None` listens for Ctrl-C itself.
    pub interrupt: Option<CancellationToken>,
}

impl Io {
    /// The process's stdout and stderr; Ctrl-C interrupts.
    pub fn std() -> Io {
        Io {
            out: Sink::new(std::io::stdout()),
            err: Sink::new(std::io::stderr()),
            err_is_terminal: std::io::stderr().is_terminal(),
            interrupt: None,
        }
    }

    /// In-memory streams (tests): what was written is in the returned buffers.
    pub fn captured() -> (Io, Captured) {
        let captured = Captured::default();
        let io = Io {
            out: Sink::new(SharedBuf(captured.out.clone())),
            err: Sink::new(SharedBuf(captured.err.clone())),
            err_is_terminal: false,
            interrupt: Some(CancellationToken::new()),
        };
        (io, captured)
    }

    /// A value as pretty JSON on stdout (the `--output json` document).
    pub fn json<T: serde::Serialize>(&self, value: &T) {
        self.out.line(serde_json::to_string_pretty(value).expect("serializable"));
    }
}

/// What a captured `Io` received.
#[derive(Clone, Default)]
pub struct Captured {
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

impl Captured {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }
}

struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
