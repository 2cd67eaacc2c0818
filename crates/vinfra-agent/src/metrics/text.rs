//! The Prometheus text exposition format (version 0.0.4), written straight into one `String`:
//! per family a `# HELP` and a `# TYPE` line, then its series (`name{label="value",…} value`),
//! then an empty line. A family without series is left out, header and all.
//!
//! Label values are escaped as the format asks (backslash, double quote and line feed as `\\`,
//! `\"` and `\n`), help texts likewise (backslash and line feed). Label names and family names
//! are the agent's own constants, written as they are.

use std::fmt::Write;

/// The type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    /// Only goes up (but for a restart); integer values.
    Counter,
    /// Any value.
    Gauge,
}

impl FamilyKind {
    fn as_str(self) -> &'static str {
        match self {
            FamilyKind::Counter => "counter",
            FamilyKind::Gauge => "gauge",
        }
    }
}

/// A value of a series: a counter's `u64` or a gauge's `f64`.
pub trait Value: Copy {
    /// Appends the value as the format writes it.
    fn write_to(self, out: &mut String);
}

impl Value for u64 {
    fn write_to(self, out: &mut String) {
        // Writing into a String does not fail.
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write_to(self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// A set of labels, escaped once and written as often as needed: `a="1",b="2"` (without the
/// braces); empty for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(String);

impl Labels {
    /// No labels.
    pub const NONE: Labels = Labels(String::new());

    /// The labels `pairs`, in their order.
    pub fn new(pairs: &[(&str, &str)]) -> Labels {
        let mut l = Labels(String::new());
        for (name, value) in pairs {
            l.push(name, value);
        }
        l
    }

    /// These labels and one more after them.
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut l = self.clone();
        l.push(name, value);
        l
    }

    fn push(&mut self, name: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(name);
        self.0.push_str("=\"");
        escape(&mut self.0, value, true);
        self.0.push('"');
    }
}

/// Appends `s` escaped: backslash and line feed always, the double quote in a label value.
fn escape(out: &mut String, s: &str, quote: bool) {
    if !s.contains(['\\', '\n', '"']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// The text being written.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
    /// The family being written.
    name: &'static str,
    /// Its header, until its first series writes it.
    header: Option<(&'static str, FamilyKind)>,
}

impl Text {
    /// An empty text with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Text {
        Text {
            out: String::with_capacity(bytes),
            ..Text::default()
        }
    }

    /// Starts the family `name`; its `# HELP` and `# TYPE` lines come before its first series.
    /// Each family is started once: its series are written together.
    pub fn family(&mut self, name: &'static str, help: &'static str, kind: FamilyKind) {
        self.end_family();
        self.name = name;
        self.header = Some((help, kind));
    }

    /// A series of the current family.
    pub fn series(&mut self, labels: &Labels, value: impl Value) {
        self.series_with(labels, None, value);
    }

    /// A series of the current family with `labels` and one label more after them.
    pub fn series_with(&mut self, labels: &Labels, more: Option<(&str, &str)>, value: impl Value) {
        if let Some((help, kind)) = self.header.take() {
            self.out.push_str("# HELP ");
            self.out.push_str(self.name);
            self.out.push(' ');
            escape(&mut self.out, help, false);
            self.out.push_str("\n# TYPE ");
            self.out.push_str(self.name);
            self.out.push(' ');
            self.out.push_str(kind.as_str());
            self.out.push('\n');
        }
        self.out.push_str(self.name);
        if !labels.0.is_empty() || more.is_some() {
            self.out.push('{');
            self.out.push_str(&labels.0);
            if let Some((name, value)) = more {
                if !labels.0.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str(name);
                self.out.push_str("=\"");
                escape(&mut self.out, value, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
    }

    /// The empty line after a family that had series.
    fn end_family(&mut self) {
        if self.header.take().is_none() && !self.name.is_empty() {
            self.out.push('\n');
        }
        self.name = "";
    }

    /// The whole text.
    pub fn finish(mut self) -> String {
        self.end_family();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_series_and_empty_families() {
        let mut t = Text::with_capacity(0);
        t.family("a_total", "Things counted.", FamilyKind::Counter);
        t.series(&Labels::new(&[("vm", "x"), ("nic", "0")]), 3u64);
        t.series_with(&Labels::new(&[("vm", "y")]), Some(("reason", "runt")), 4u64);
        t.family("nothing", "Never written.", FamilyKind::Gauge);
        t.family("b", "A level.", FamilyKind::Gauge);
        t.series(&Labels::NONE, 0.5);
        t.series_with(&Labels::NONE, Some(("state", "up")), 268435456.0);
        t.series(&Labels::NONE, f64::INFINITY);
        t.family("last", "Nothing either.", FamilyKind::Counter);
        assert_eq!(
            t.finish(),
            "# HELP a_total Things counted.\n\
             # TYPE a_total counter\n\
             a_total{vm=\"x\",nic=\"0\"} 3\n\
             a_total{vm=\"y\",reason=\"runt\"} 4\n\
             \n\
             # HELP b A level.\n\
             # TYPE b gauge\n\
             b 0.5\n\
             b{state=\"up\"} 268435456\n\
             b +Inf\n\
             \n"
        );
        assert_eq!(Text::with_capacity(0).finish(), "");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut t = Text::with_capacity(0);
        t.family("c", "A \\ and a\nline feed, \"quoted\".", FamilyKind::Gauge);
        let labels = Labels::new(&[("vm", "a\"b\\c\nd")]).with("nic", "\"");
        t.series_with(&labels, Some(("reason", "x\\\n\"")), 1.0);
        assert_eq!(
            t.finish(),
            "# HELP c A \\\\ and a\\nline feed, \"quoted\".\n\
             # TYPE c gauge\n\
             c{vm=\"a\\\"b\\\\c\\nd\",nic=\"\\\"\",reason=\"x\\\\\\n\\\"\"} 1\n\
             \n"
        );
    }
}
