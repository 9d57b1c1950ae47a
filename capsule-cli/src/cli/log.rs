//! Where `tracing` events go. With `CAPSULE_LOG` set (an env-filter directive such as
//! `debug` or `capsule_core::supervisor=trace`): tracing-subscriber's formatter, spans and all.
//! Without it: [`Warnings`], which prints warnings and errors as one line each and keeps no
//! span registry: `capsule run` starts a process per call, and the formatter's registry
//! (sharded slabs, filter state) was measurable in its start-up for events it never shows.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// Install the subscriber for this process.
pub fn init() {
    match tracing_subscriber::EnvFilter::try_from_env("CAPSULE_LOG") {
        Ok(filter) => tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init(),
        Err(_) => {
            // Fails only if a subscriber is already set, which main never does.
            let _ = tracing::subscriber::set_global_default(Warnings::default());
        }
    }
}

/// Warnings and errors to stderr, `capsule: warning: MESSAGE key=value...`; nothing else.
#[derive(Default)]
pub struct Warnings {
    /// Lines kept here instead of printed (tests).
    kept: Option<std::sync::Mutex<Vec<String>>>,
}

impl Warnings {
    fn wanted(meta: &Metadata<'_>) -> bool {
        meta.is_event() && *meta.level() <= Level::WARN
    }
}

impl Subscriber for Warnings {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::wanted(meta) { Interest::always() } else { Interest::never() }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        Self::wanted(meta)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }

    // Spans are never enabled (`wanted` is for events only); ids are still asked for.
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let kind = if *event.metadata().level() == Level::ERROR { "error" } else { "warning" };
        let text = format!("capsule: {kind}: {}{}", line.message, line.fields);
        match &self.kept {
            Some(kept) => kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(text),
            None => eprintln!("{text}"),
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message, then its other fields as ` key=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_errors_only_with_fields_after_the_message() {
        let w = std::sync::Arc::new(Warnings { kept: Some(std::sync::Mutex::new(Vec::new())) });
        tracing::subscriber::with_default(w.clone(), || {
            tracing::info!("not shown");
            let _span = tracing::warn_span!("not an event").entered();
            tracing::warn!(path = "/etc/x", code = 3, "materialise failed");
            tracing::error!("plain");
        });
        let got = w.kept.as_ref().map(|k| k.lock().unwrap().clone()).unwrap_or_default();
        let want = ["capsule: warning: materialise failed path=/etc/x code=3", "capsule: error: plain"];
        assert_eq!(got, want);
    }
}
