//! Results: samples per metric and server, medians, the ratio holdfast/distribution, the
//! target each ratio is read against, the table on stdout and the JSON file.

use serde_json::{json, Value};

use crate::limits::Limits;
use crate::servers::Kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// What a ratio (holdfast / distribution) is read against. Never asserted.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    None,
    /// ratio ≥ x
    AtLeast(f64),
    /// ratio ≤ x
    AtMost(f64),
    /// ratio ≥ x, or holdfast ≥ `share` of the fsync'd disk write rate
    AtLeastOrDisk(f64, f64),
    /// ratio ≥ x and holdfast ≥ `share` of the loopback TLS rate
    AtLeastAndTls(f64, f64),
}

pub struct Metric {
    pub id: &'static str,
    pub title: String,
    pub unit: &'static str,
    pub better: Better,
    pub target: Target,
    /// Samples per server (indexed by `Kind::index`), one per round.
    pub samples: [Vec<f64>; 2],
}

pub struct Report {
    pub metrics: Vec<Metric>,
    pub notes: Vec<String>,
    pub skipped: Vec<String>,
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

fn fmt_ratio(x: f64) -> String {
    if (x - 1.0 / 3.0).abs() < 1e-9 {
        "1/3".to_owned()
    } else {
        format!("{x:.1}")
    }
}

fn fmt_value(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

impl Metric {
    pub fn new(
        id: &'static str,
        title: String,
        unit: &'static str,
        better: Better,
        target: Target,
    ) -> Metric {
        Metric {
            id,
            title,
            unit,
            better,
            target,
            samples: [Vec::new(), Vec::new()],
        }
    }

    pub fn median(&self, k: Kind) -> Option<f64> {
        median(&self.samples[k.index()])
    }

    pub fn ratio(&self) -> Option<f64> {
        let (h, d) = (
            self.median(Kind::Holdfast)?,
            self.median(Kind::Distribution)?,
        );
        (d != 0.0).then(|| h / d)
    }

    pub fn target_text(&self, limits: &Limits) -> String {
        match self.target {
            Target::None => "-".to_owned(),
            Target::AtLeast(x) => format!(">= {}x", fmt_ratio(x)),
            Target::AtMost(x) => format!("<= {}x", fmt_ratio(x)),
            Target::AtLeastOrDisk(x, share) => format!(
                ">= {}x or >= {:.0}% disk ({:.0} MB/s)",
                fmt_ratio(x),
                share * 100.0,
                share * limits.fsync_write_mb_s
            ),
            Target::AtLeastAndTls(x, share) => format!(
                ">= {}x and >= {:.0}% TLS ({:.0} MB/s)",
                fmt_ratio(x),
                share * 100.0,
                share * limits.tls_loopback_mb_s
            ),
        }
    }

    /// Whether the target is met; `None` when there is no target or no data to judge.
    pub fn met(&self, limits: &Limits) -> Option<bool> {
        let h = self.median(Kind::Holdfast)?;
        match self.target {
            Target::None => None,
            Target::AtLeast(x) => Some(self.ratio()? >= x),
            Target::AtMost(x) => Some(self.ratio()? <= x),
            Target::AtLeastOrDisk(x, share) => {
                let disk = h >= share * limits.fsync_write_mb_s;
                match self.ratio() {
                    Some(r) => Some(r >= x || disk),
                    None => disk.then_some(true),
                }
            }
            Target::AtLeastAndTls(x, share) => {
                let tls = h >= share * limits.tls_loopback_mb_s;
                match self.ratio() {
                    Some(r) => Some(r >= x && tls),
                    None => (!tls).then_some(false),
                }
            }
        }
    }
}

impl Report {
    pub fn new() -> Report {
        Report {
            metrics: Vec::new(),
            notes: Vec::new(),
            skipped: Vec::new(),
        }
    }

    pub fn define(&mut self, m: Metric) {
        assert!(
            self.metrics.iter().all(|x| x.id != m.id),
            "metric {} twice",
            m.id
        );
        self.metrics.push(m);
    }

    pub fn add(&mut self, id: &str, k: Kind, value: f64) {
        let m = self
            .metrics
            .iter_mut()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("undefined metric {id}"));
        assert!(
            value.is_finite() && value >= 0.0,
            "{id} for {k}: not a measurement: {value}"
        );
        m.samples[k.index()].push(value);
    }

    /// The table: one row per metric with samples.
    pub fn table(&self, limits: &Limits, judge: bool) -> String {
        let header = [
            "workload",
            "unit",
            "holdfast",
            "distribution",
            "ratio h/d",
            "target",
            "met?",
        ];
        let mut rows: Vec<[String; 7]> = Vec::new();
        for m in &self.metrics {
            if m.samples.iter().all(Vec::is_empty) {
                continue;
            }
            let cell = |k: Kind| m.median(k).map(fmt_value).unwrap_or_else(|| "-".into());
            let met = if !judge {
                "n/a (smoke)".to_owned()
            } else {
                match m.met(limits) {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "NO".to_owned(),
                    None => "-".to_owned(),
                }
            };
            rows.push([
                m.title.clone(),
                m.unit.to_owned(),
                cell(Kind::Holdfast),
                cell(Kind::Distribution),
                m.ratio()
                    .map(|r| format!("{r:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                m.target_text(limits),
                met,
            ]);
        }
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
                let pad = w - c.chars().count();
                // Text columns left-aligned, numbers right-aligned.
                if i == 0 || i == 1 || i == 5 || i == 6 {
                    s.push_str(&format!(" {c}{} |", " ".repeat(pad)));
                } else {
                    s.push_str(&format!(" {}{c} |", " ".repeat(pad)));
                }
            }
            s.push('\n');
            s
        };
        let mut out = line(&header.map(str::to_owned));
        out.push('|');
        for w in widths {
            out.push_str(&format!("{}|", "-".repeat(w + 2)));
        }
        out.push('\n');
        for r in &rows {
            out.push_str(&line(r));
        }
        out
    }

    pub fn json(&self, limits: &Limits, judge: bool, mut head: Value) -> Value {
        let metrics: Vec<Value> = self
            .metrics
            .iter()
            .map(|m| {
                let per = |k: Kind| {
                    json!({
                        "samples": m.samples[k.index()],
                        "median": m.median(k),
                    })
                };
                json!({
                    "id": m.id,
                    "title": m.title,
                    "unit": m.unit,
                    "better": match m.better { Better::Higher => "higher", Better::Lower => "lower" },
                    "holdfast": per(Kind::Holdfast),
                    "distribution": per(Kind::Distribution),
                    "ratio_holdfast_over_distribution": m.ratio(),
                    "target": m.target_text(limits),
                    "met": if judge { m.met(limits) } else { None },
                })
            })
            .collect();
        let obj = head.as_object_mut().expect("JSON head is an object");
        obj.insert("metrics".into(), Value::Array(metrics));
        obj.insert("notes".into(), json!(self.notes));
        obj.insert("skipped".into(), json!(self.skipped));
        head
    }
}

/// Checks a written report the way a consumer would: parses, has every metric, and every
/// server that ran has a finite, positive median for every metric not skipped.
pub fn check_json(text: &str, servers: &[Kind]) -> Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("report is not JSON: {e}"))?;
    let metrics = v["metrics"]
        .as_array()
        .ok_or("report has no metrics array")?;
    if metrics.is_empty() {
        return Err("report has no metrics".into());
    }
    let skipped: Vec<&str> = v["skipped"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for m in metrics {
        let id = m["id"].as_str().ok_or("metric without id")?;
        // An entry is "<id>: <reason>"; match the whole id (pull_h1 is a prefix of
        // pull_h1_server_cpu).
        if skipped
            .iter()
            .any(|s| s.split_once(':').map(|(k, _)| k) == Some(id))
        {
            continue;
        }
        for k in servers {
            let med = m[k.name()]["median"].as_f64();
            match med {
                Some(x) if x.is_finite() && x > 0.0 => {}
                other => return Err(format!("{id}: {k} median is {other:?}")),
            }
        }
    }
    if v["machine"]["sha256_mb_s"].as_f64().is_none() {
        return Err("report lacks machine.sha256_mb_s".into());
    }
    Ok(())
}
