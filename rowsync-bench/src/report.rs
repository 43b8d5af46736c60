//! One result of a scenario: parameters, rowsync's figures, each baseline's figures and the
//! target it decides; printed as a readable table and as one JSON line.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// The capture source of this run's hubs, named in every JSON line.
static SOURCE: OnceLock<&'static str> = OnceLock::new();

/// Names the capture source of this run (once, at start).
pub fn set_source(source: &'static str) {
    let _ = SOURCE.set(source);
}

/// The capture source of this run (`triggers` unless set).
pub fn source() -> &'static str {
    SOURCE.get().copied().unwrap_or("triggers")
}

/// A target of issue 5 and whether this run met it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The goal, in words.
    pub goal: String,
    /// Whether it was met.
    pub met: bool,
    /// The measured value the verdict rests on.
    pub measured: String,
}

/// One result: a scenario at one set of parameters.
#[derive(Debug, Clone)]
pub struct Report {
    scenario: &'static str,
    params: Map<String, Value>,
    rowsync: Map<String, Value>,
    baselines: Vec<(String, Map<String, Value>)>,
    target: Option<Target>,
    notes: Vec<String>,
}

impl Report {
    /// An empty result of `scenario`.
    pub fn new(scenario: &'static str) -> Report {
        Report {
            scenario,
            params: Map::new(),
            rowsync: Map::new(),
            baselines: Vec::new(),
            target: None,
            notes: Vec::new(),
        }
    }

    /// Adds a parameter.
    pub fn param(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.params.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a figure of rowsync.
    pub fn rowsync(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.rowsync.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a figure of baseline `baseline` (columns keep the order baselines first appear).
    pub fn baseline(&mut self, baseline: &str, name: &str, value: impl Into<Value>) -> &mut Self {
        let at = match self.baselines.iter().position(|(b, _)| b == baseline) {
            Some(at) => at,
            None => {
                self.baselines.push((baseline.to_owned(), Map::new()));
                self.baselines.len() - 1
            }
        };
        self.baselines[at].1.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a figure of rowsync (`None`) or of a baseline.
    pub fn figure(
        &mut self,
        system: Option<&str>,
        name: &str,
        value: impl Into<Value>,
    ) -> &mut Self {
        match system {
            None => self.rowsync(name, value),
            Some(baseline) => self.baseline(baseline, name, value),
        }
    }

    /// Records the target this result decides.
    pub fn target(&mut self, goal: impl Into<String>, met: bool, measured: impl Into<String>) {
        self.target = Some(Target {
            goal: goal.into(),
            met,
            measured: measured.into(),
        });
    }

    /// Adds a note printed under the table and carried in the JSON.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// A figure of rowsync recorded earlier, as a number.
    pub fn rowsync_f64(&self, name: &str) -> Option<f64> {
        self.rowsync.get(name).and_then(Value::as_f64)
    }

    /// A figure of baseline `baseline` recorded earlier, as a number.
    pub fn baseline_f64(&self, baseline: &str, name: &str) -> Option<f64> {
        self.baselines
            .iter()
            .find(|(b, _)| b == baseline)
            .and_then(|(_, figures)| figures.get(name))
            .and_then(Value::as_f64)
    }

    /// A parameter recorded earlier, as shown in the table.
    pub fn param_value(&self, name: &str) -> Option<String> {
        self.params.get(name).map(plain)
    }

    /// The target, if this result decides one.
    pub fn target_verdict(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// The JSON line: `{"scenario", "source", "params", "rowsync", "baselines"}`, plus
    /// `"target"` and `"notes"` when present.
    pub fn json(&self) -> String {
        let baselines: Map<String, Value> = self
            .baselines
            .iter()
            .map(|(name, figures)| (name.clone(), Value::Object(figures.clone())))
            .collect();
        let mut line = json!({
            "scenario": self.scenario,
            "source": source(),
            "params": self.params,
            "rowsync": self.rowsync,
            "baselines": baselines,
        });
        if let Some(t) = &self.target {
            line["target"] = json!({ "goal": t.goal, "met": t.met, "measured": t.measured });
        }
        if !self.notes.is_empty() {
            line["notes"] = json!(self.notes);
        }
        line.to_string()
    }

    /// The readable table: one row per figure, one column for rowsync and each baseline.
    pub fn table(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
        let mut out = format!(
            "== {} (source: {})  {}\n",
            self.scenario,
            source(),
            params.join(" ")
        );
        let mut columns: Vec<(&str, &Map<String, Value>)> = vec![("rowsync", &self.rowsync)];
        columns.extend(self.baselines.iter().map(|(n, m)| (n.as_str(), m)));
        let mut figures: Vec<&str> = Vec::new();
        for (_, map) in &columns {
            for key in map.keys() {
                if !figures.contains(&key.as_str()) {
                    figures.push(key);
                }
            }
        }
        let mut rows = vec![std::iter::once("figure".to_owned())
            .chain(columns.iter().map(|(n, _)| (*n).to_owned()))
            .collect::<Vec<_>>()];
        for figure in figures {
            let mut row = vec![figure.to_owned()];
            row.extend(
                columns
                    .iter()
                    .map(|(_, m)| m.get(figure).map_or("-".to_owned(), plain)),
            );
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (cell, w))| {
                    if i == 0 {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            out.push_str(&format!("  {}\n", cells.join("  ")));
        }
        if let Some(t) = &self.target {
            let verdict = if t.met { "MET" } else { "MISSED" };
            out.push_str(&format!(
                "  target: {} -> {verdict} ({})\n",
                t.goal, t.measured
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }

    /// Prints the table, then the JSON line.
    pub fn print(&self) {
        println!("{}{}", self.table(), self.json());
    }
}

/// A value as a table cell: numbers rounded to what can be read, strings unquoted.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(0.0);
            if x == 0.0 || x.abs() >= 100.0 {
                format!("{x:.0}")
            } else if x.abs() >= 1.0 {
                format!("{x:.2}")
            } else {
                format!("{x:.3}")
            }
        }
        other => other.to_string(),
    }
}

/// A float rounded to 3 decimals, so JSON lines stay short.
pub fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::Report;

    #[test]
    fn json_line_has_the_four_parts() {
        let mut r = Report::new("stampede");
        r.param("subscribers", 10)
            .rowsync("reads_per_change", 1.0)
            .baseline("naive", "reads_per_change", 20.0);
        r.target("exactly 1 read per change", true, "1.00");
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["scenario"], "stampede");
        assert_eq!(v["source"], super::source());
        assert_eq!(v["params"]["subscribers"], 10);
        assert_eq!(v["baselines"]["naive"]["reads_per_change"], 20.0);
        assert_eq!(v["target"]["met"], true);
        assert!(r.table().contains("reads_per_change"));
    }
}
