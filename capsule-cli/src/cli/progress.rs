//! [`Bars`]: capsule-core's [`Progress`] drawn with indicatif on stderr, or nothing when
//! stderr is not a terminal, or with `-q` / `--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use capsule_core::capture::Progress;

/// Progress bars for one verb.
pub struct Bars {
    bar: ProgressBar,
}

impl Bars {
    /// Visible only when `show`.
    pub fn new(show: bool) -> Bars {
        let target = if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Bars { bar: ProgressBar::with_draw_target(None, target) }
    }
}

impl Progress for Bars {
    fn start(&self, phase: &str, len: Option<u64>) {
        self.bar.reset();
        let template = match (len, phase) {
            (Some(_), "exporting" | "importing" | "pushing" | "pulling" | "fetching") => {
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}"
            }
            (Some(_), _) => "{msg:>10} [{bar:30}] {pos}/{len} {per_sec}",
            (None, _) => "{msg:>10} {spinner} {pos} files {per_sec}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_length(len.unwrap_or(0));
        self.bar.set_message(phase.to_owned());
    }
    fn inc(&self, n: u64) {
        self.bar.inc(n);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
