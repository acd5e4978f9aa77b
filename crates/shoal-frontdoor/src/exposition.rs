//! Which text format `/metrics` answers in: OpenMetrics, or Prometheus's older text format
//! (`text/plain; version=0.0.4`) for a scraper that asks for that one, chosen from the request's
//! `Accept` header as Prometheus's own client libraries choose it.
//!
//! Pages are rendered in OpenMetrics ([`crate::metrics::Exporter`]); [`Format::render`] turns
//! one into the text format: a counter's `# HELP`/`# TYPE` name its `_total` series, `# UNIT`
//! lines, `_created` series and the final `# EOF` go, `unknown` is `untyped`.

use std::collections::HashSet;

use crate::metrics::CONTENT_TYPE;

/// Prometheus's text format, version 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The formats `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics text ([`CONTENT_TYPE`]): what Prometheus asks for first, and the answer when
    /// the request states no preference.
    OpenMetrics,
    /// Prometheus's text format 0.0.4 ([`TEXT_CONTENT_TYPE`]).
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: the text format when it rates `text/plain`
    /// above OpenMetrics (or names only `text/plain`), else OpenMetrics (no header, `*/*`,
    /// OpenMetrics first, or a tie).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::OpenMetrics;
        };
        let (mut openmetrics, mut text) = (None::<f32>, None::<f32>);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let slot = match media.as_str() {
                "application/openmetrics-text" => &mut openmetrics,
                "text/plain" => &mut text,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |seen| seen.max(q)));
        }
        match (openmetrics, text) {
            (None, Some(t)) if t > 0.0 => Format::Text,
            (Some(o), Some(t)) if t > o => Format::Text,
            _ => Format::OpenMetrics,
        }
    }

    /// The `Content-Type` of a page in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }

    /// `openmetrics`, a page as [`crate::metrics::Exporter::render`] makes it, in this format.
    pub fn render(self, openmetrics: String) -> String {
        match self {
            Format::OpenMetrics => openmetrics,
            Format::Text => to_text(&openmetrics),
        }
    }
}

/// An OpenMetrics page in Prometheus's text format 0.0.4.
fn to_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or(line.strip_prefix("# TYPE "))
        {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = &line[..7];
            let tail = if kind == "# TYPE " && tail == "unknown" {
                "untyped"
            } else {
                tail
            };
            let suffix = if counters.contains(name) {
                "_total"
            } else {
                ""
            };
            out.push_str(&format!("{kind}{name}{suffix} {tail}\n"));
            continue;
        }
        if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            if name.ends_with("_created") {
                continue;
            }
            // An exemplar (` # {...} value`) has no place in the text format.
            let sample = line.split(" # ").next().unwrap_or(line);
            out.push_str(sample);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_is_chosen_only_when_preferred() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("text/plain; version=0.0.4")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.5,application/openmetrics-text;q=0.5")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0")),
            Format::OpenMetrics
        );
        assert_eq!(Format::Text.content_type(), TEXT_CONTENT_TYPE);
    }

    #[test]
    fn counters_units_and_the_end_marker_are_translated() {
        let page = "# HELP shoal_commands Commands run.\n\
                    # TYPE shoal_commands counter\n\
                    shoal_commands_total{command=\"get\"} 3\n\
                    shoal_commands_created{command=\"get\"} 1.5\n\
                    # HELP shoal_uptime Time since start.\n\
                    # TYPE shoal_uptime gauge\n\
                    # UNIT shoal_uptime seconds\n\
                    shoal_uptime 12.5\n\
                    # HELP shoal_odd Something.\n\
                    # TYPE shoal_odd unknown\n\
                    shoal_odd 1 # {trace=\"a\"} 1\n\
                    # EOF\n";
        assert_eq!(
            Format::Text.render(page.to_string()),
            "# HELP shoal_commands_total Commands run.\n\
             # TYPE shoal_commands_total counter\n\
             shoal_commands_total{command=\"get\"} 3\n\
             # HELP shoal_uptime Time since start.\n\
             # TYPE shoal_uptime gauge\n\
             shoal_uptime 12.5\n\
             # HELP shoal_odd Something.\n\
             # TYPE shoal_odd untyped\n\
             shoal_odd 1\n"
        );
        assert_eq!(Format::OpenMetrics.render(page.to_string()), page);
    }
}
