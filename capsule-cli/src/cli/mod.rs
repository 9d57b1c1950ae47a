//! Command-line definitions and the output helpers every verb shares.

pub mod args;
pub mod log;
pub mod progress;

use std::io::IsTerminal;

pub use args::Cli;

/// How a verb should talk: JSON or text, quiet or not.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `--json`.
    pub json: bool,
    /// `-q`.
    pub quiet: bool,
}

impl Output {
    /// Progress bars only for a person watching a terminal.
    pub fn bars(&self) -> bool {
        !self.json && !self.quiet && std::io::stderr().is_terminal()
    }

    /// An informational line on stderr, unless quiet or JSON.
    pub fn info(&self, msg: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            eprintln!("{msg}");
        }
    }

    /// Print `value` as one JSON document on stdout.
    pub fn print_json(&self, value: &serde_json::Value) -> anyhow::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        Ok(())
    }
}

/// Bytes for humans: "1.5 MiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)] // display only
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
