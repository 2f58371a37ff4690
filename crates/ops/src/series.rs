//! The in-process time series behind the dashboard's curves, kept as a round-robin database:
//! three tiers of fixed length (by default an hour of 10 s points, a day of 5 min points and
//! a week of 30 min points), each coarser tier holding averages of the finer samples. Memory
//! stays fixed whatever the uptime, and the whole is saved to a file so that a restart does
//! not blank the curves.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

/// A tier: its name in the API, its step in base samples, and how many points it keeps.
const TIERS: [(&str, u64, usize); 3] = [("1h", 1, 360), ("24h", 30, 288), ("7d", 180, 336)];

/// The names of the ranges the dashboard can show.
pub const RANGES: [&str; 3] = [TIERS[0].0, TIERS[1].0, TIERS[2].0];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Tier {
    step_s: u64,
    capacity: usize,
    /// Unix seconds of each point (its end), ascending.
    times: VecDeque<i64>,
    /// One value per point per series; `None` where the series had no value.
    columns: BTreeMap<String, VecDeque<Option<f32>>>,
    /// The samples of the bucket being averaged (coarse tiers): bucket, then sum and count
    /// per series.
    #[serde(skip)]
    bucket: Option<i64>,
    #[serde(skip)]
    sums: BTreeMap<String, (f64, u32)>,
}

impl Tier {
    fn push(&mut self, time_s: i64, values: &BTreeMap<String, f64>) {
        self.times.push_back(time_s);
        let len = self.times.len();
        for (name, value) in values {
            let column = self.columns.entry(name.clone()).or_default();
            column.resize(len - 1, None);
            column.push_back(value.is_finite().then_some(*value as f32));
        }
        for column in self.columns.values_mut() {
            column.resize(len, None);
        }
        while self.times.len() > self.capacity {
            self.times.pop_front();
            for column in self.columns.values_mut() {
                column.pop_front();
            }
        }
        self.columns.retain(|_, column| column.iter().any(Option::is_some));
    }

    /// Adds a base sample; a coarse tier emits the average of a bucket once the next begins.
    fn add(&mut self, time_s: i64, values: &BTreeMap<String, f64>) {
        let step = self.step_s.max(1) as i64;
        let bucket = time_s.div_euclid(step);
        if let Some(current) = self.bucket
            && current != bucket
            && !self.sums.is_empty()
        {
            let averages = std::mem::take(&mut self.sums)
                .into_iter()
                .map(|(name, (sum, count))| (name, sum / f64::from(count)))
                .collect();
            self.push((current + 1) * step, &averages);
        }
        self.bucket = Some(bucket);
        for (name, value) in values.iter().filter(|(_, v)| v.is_finite()) {
            let entry = self.sums.entry(name.clone()).or_default();
            entry.0 += value;
            entry.1 += 1;
        }
    }
}

/// Every tier; see the module doc.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    tiers: Vec<Tier>,
}

/// One range as the dashboard reads it.
#[derive(Debug, Serialize)]
pub struct Range<'a> {
    pub range: &'a str,
    pub step_s: u64,
    pub times: &'a VecDeque<i64>,
    pub columns: &'a BTreeMap<String, VecDeque<Option<f32>>>,
}

impl Series {
    /// Empty series for base samples every `sample_s` seconds.
    pub fn new(sample_s: u64) -> Series {
        let tiers = TIERS
            .iter()
            .map(|&(_, steps, capacity)| Tier {
                step_s: sample_s.max(1) * steps,
                capacity,
                ..Tier::default()
            })
            .collect();
        Series { tiers }
    }

    /// Adds one sample taken at `time_s` (unix seconds).
    pub fn add(&mut self, time_s: i64, values: &BTreeMap<String, f64>) {
        let (finest, coarse) = self.tiers.split_first_mut().expect("tiers");
        finest.push(time_s, values);
        for tier in coarse {
            tier.add(time_s, values);
        }
    }

    /// Marks a gap (the process was down): every curve breaks at `time_s`.
    pub fn gap(&mut self, time_s: i64) {
        for tier in &mut self.tiers {
            if tier.times.back().is_some_and(|last| *last < time_s) {
                tier.push(time_s, &BTreeMap::new());
            }
            tier.bucket = None;
            tier.sums.clear();
        }
    }

    pub fn range(&self, name: &str) -> Option<Range<'_>> {
        let index = RANGES.iter().position(|r| *r == name)?;
        let tier = &self.tiers[index];
        Some(Range {
            range: RANGES[index],
            step_s: tier.step_s,
            times: &tier.times,
            columns: &tier.columns,
        })
    }

    /// Reads series saved by [`save`](Self::save) for the same sampling interval; `None` when
    /// there are none or they do not fit (another interval, another format).
    pub fn load(path: &Path, sample_s: u64) -> Option<Series> {
        let bytes = std::fs::read(path).ok()?;
        let series: Series = serde_json::from_slice(&bytes)
            .map_err(|error| tracing::warn!(path = %path.display(), %error, "unreadable curves"))
            .ok()?;
        let fresh = Series::new(sample_s);
        let fits = series.tiers.len() == fresh.tiers.len()
            && series.tiers.iter().zip(&fresh.tiers).all(|(a, b)| {
                a.step_s == b.step_s && a.capacity == b.capacity && a.times.len() <= a.capacity
            })
            && series.tiers.iter().all(|t| t.columns.values().all(|c| c.len() == t.times.len()));
        fits.then_some(series)
    }

    /// Writes the series to `path` through a temporary file, so a crash leaves the old ones.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_finest_tier_keeps_every_sample_and_drops_the_oldest() {
        let mut series = Series::new(10);
        for i in 0..400 {
            series.add(i * 10, &values(&[("online", i as f64)]));
        }
        let hour = series.range("1h").unwrap();
        assert_eq!(hour.times.len(), 360);
        assert_eq!(hour.times.front(), Some(&400));
        assert_eq!(hour.columns["online"].back(), Some(&Some(399.0)));
    }

    #[test]
    fn coarse_tiers_hold_bucket_averages() {
        let mut series = Series::new(10);
        // Two 300 s buckets of the day tier, then one sample to close the second.
        for i in 0..60 {
            series.add(i * 10, &values(&[("rate", if i < 30 { 2.0 } else { 4.0 })]));
        }
        series.add(600, &values(&[("rate", 0.0)]));
        let day = series.range("24h").unwrap();
        assert_eq!(day.step_s, 300);
        assert_eq!(day.times, &VecDeque::from([300, 600]));
        assert_eq!(day.columns["rate"], VecDeque::from([Some(2.0), Some(4.0)]));
    }

    #[test]
    fn new_series_are_back_filled_and_gaps_break_curves() {
        let mut series = Series::new(1);
        series.add(1, &values(&[("a", 1.0)]));
        series.add(2, &values(&[("a", 2.0), ("b", 5.0)]));
        series.gap(100);
        series.add(101, &values(&[("a", 3.0)]));
        let hour = series.range("1h").unwrap();
        assert_eq!(hour.times, &VecDeque::from([1, 2, 100, 101]));
        assert_eq!(hour.columns["a"], VecDeque::from([Some(1.0), Some(2.0), None, Some(3.0)]));
        assert_eq!(hour.columns["b"], VecDeque::from([None, Some(5.0), None, None]));
    }

    #[test]
    fn saved_series_load_back_only_for_the_same_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.json");
        let mut series = Series::new(10);
        series.add(10, &values(&[("online", 3.0)]));
        series.save(&path).unwrap();
        let loaded = Series::load(&path, 10).unwrap();
        assert_eq!(loaded.range("1h").unwrap().columns["online"], VecDeque::from([Some(3.0)]));
        assert!(Series::load(&path, 5).is_none(), "another sampling interval starts afresh");
        assert!(Series::load(&dir.path().join("none.json"), 10).is_none());
    }
}
