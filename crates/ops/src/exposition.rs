//! Reads this process's own Prometheus text (as its recorder renders it) back into numbers,
//! so that the curves and the statistics are the same figures `/metrics` shows.

use std::collections::BTreeMap;

/// One line of the exposition: a metric name, its labels, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Every sample line of `text`; comments, blank lines and lines that do not parse are
/// skipped (the text comes from our own recorder).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (head, BTreeMap::new()),
    };
    Some(Sample { name: name.to_string(), labels, value })
}

fn parse_labels(mut text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (name, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (index, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break index,
                c => value.push(c),
            }
        };
        labels.insert(name.to_string(), value);
        text = rest[end + 1..].strip_prefix(',').unwrap_or(&rest[end + 1..]);
    }
    Some(labels)
}

/// The sum of every sample named `name` whose labels pass `keep`.
pub fn sum(samples: &[Sample], name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
    samples.iter().filter(|s| s.name == name && keep(s)).fold(0.0, |total, s| total + s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# TYPE a counter\na_total 3\n\nb{x=\"1\",y=\"q\\\"uote\"} 2.5\n\
                    c_bucket{le=\"+Inf\"} 7\nbroken line\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 3);
        assert_eq!((samples[0].name.as_str(), samples[0].value), ("a_total", 3.0));
        assert_eq!(samples[1].label("x"), Some("1"));
        assert_eq!(samples[1].label("y"), Some("q\"uote"));
        assert_eq!(samples[2].label("le"), Some("+Inf"));
        assert_eq!(sum(&samples, "b", |s| s.label("x") == Some("1")), 2.5);
    }
}
