//! Medians, spreads and pairwise ratios of timed runs.

use serde::{Serialize, Serializer};

/// The seconds of several runs of one measure, in run order (so two figures
/// taken in the same runs can be paired).
#[derive(Clone, Debug, Default)]
pub struct Figure(pub Vec<f64>);

impl Figure {
    pub fn push(&mut self, seconds: f64) {
        self.0.push(seconds);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn median(&self) -> f64 {
        median(&self.0)
    }
    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
    /// `median (min–max)`, or `n/a`.
    pub fn show(&self) -> String {
        if self.0.is_empty() {
            return "n/a".into();
        }
        format!(
            "{} ({}–{})",
            dur(self.median()),
            dur(self.min()),
            dur(self.max())
        )
    }
}

/// In the JSON: `null` for no runs, else the median, the spread and every
/// run.
impl Serialize for Figure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Summary<'a> {
            median_s: f64,
            min_s: f64,
            max_s: f64,
            runs_s: &'a [f64],
        }
        if self.0.is_empty() {
            return s.serialize_none();
        }
        Summary {
            median_s: self.median(),
            min_s: self.min(),
            max_s: self.max(),
            runs_s: &self.0,
        }
        .serialize(s)
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Run i of `a` over run i of `b`, for every run both have: the median and
/// the spread of those ratios. In the JSON, `Option<Ratio>` is `null` when
/// no run pairs up.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Ratio {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Ratio {
    pub fn of(a: &Figure, b: &Figure) -> Option<Ratio> {
        let r: Vec<f64> =
            a.0.iter()
                .zip(&b.0)
                .map(|(x, y)| x / y)
                .filter(|r| r.is_finite())
                .collect();
        if r.is_empty() {
            return None;
        }
        let f = Figure(r);
        Some(Ratio {
            median: f.median(),
            min: f.min(),
            max: f.max(),
        })
    }
    pub fn show(r: Option<Ratio>) -> String {
        match r {
            Some(r) => format!("{:.2}× ({:.2}–{:.2})", r.median, r.min, r.max),
            None => "–".into(),
        }
    }
}

/// Seconds in the unit that reads best.
pub fn dur(s: f64) -> String {
    if !s.is_finite() {
        "n/a".into()
    } else if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}
