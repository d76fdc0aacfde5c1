//! Histograms from the Prometheus text format, and their quantiles.
//!
//! Enough of the exposition format (and of OpenMetrics, which prometheus-client writes) to read a
//! node's `/metrics`: every `NAME_bucket{…,le="…"} VALUE` series becomes a [`Histogram`] named
//! NAME with its other labels, joined with the `NAME_count` and `NAME_sum` series of the same
//! labels. Comments, other metric types, timestamps and exemplars are skipped.
//!
//! Quantiles follow PromQL's `histogram_quantile`: find the bucket where the cumulative count
//! reaches `q · count`, and interpolate linearly inside it (the first bucket starts at 0). A
//! quantile that falls in the `+Inf` bucket is only known to be above the highest finite bound,
//! and says so ([`Quantile::Above`]).

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context as _, bail};

/// One histogram series: a metric name and a label set, with its cumulative buckets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    /// The metric name, without `_bucket`.
    pub(crate) name: String,
    /// The labels other than `le`, sorted by name.
    pub(crate) labels: Labels,
    /// `(upper bound, cumulative count)`, by increasing bound; the last bound is `+Inf`.
    pub(crate) buckets: Vec<(f64, f64)>,
    /// The `_count` series (the `+Inf` bucket when absent).
    pub(crate) count: f64,
    /// The `_sum` series (0 when absent).
    pub(crate) sum: f64,
}

/// A quantile estimated from buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Quantile {
    /// Interpolated inside a finite bucket.
    Value(f64),
    /// In the `+Inf` bucket: above this, the highest finite bound.
    Above(f64),
}

impl Quantile {
    /// The value scaled by `factor` (e.g. seconds to milliseconds).
    pub(crate) fn scaled(self, factor: f64) -> Self {
        match self {
            Self::Value(v) => Self::Value(v * factor),
            Self::Above(v) => Self::Above(v * factor),
        }
    }
}

impl fmt::Display for Quantile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(v) => write!(f, "{}", short(*v)),
            Self::Above(v) => write!(f, ">{}", short(*v)),
        }
    }
}

/// A number with three significant figures or two decimals, whichever is shorter to read.
pub(crate) fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Histogram {
    /// The `q`-quantile (0..=1), or `None` when the histogram counted nothing.
    pub(crate) fn quantile(&self, q: f64) -> Option<Quantile> {
        let total = self.buckets.last().map_or(0.0, |b| b.1);
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0);
        for (i, &(bound, cum)) in self.buckets.iter().enumerate() {
            if cum >= rank && cum > 0.0 {
                if bound.is_infinite() {
                    let highest = if i == 0 { 0.0 } else { self.buckets[i - 1].0 };
                    return Some(Quantile::Above(highest));
                }
                let (low_bound, low_cum) = lower;
                // The first bucket starts at 0, as in PromQL (unless its bound is negative).
                let low_bound = if i == 0 {
                    f64::min(0.0, bound)
                } else {
                    low_bound
                };
                let inside = cum - low_cum;
                if inside <= 0.0 {
                    return Some(Quantile::Value(bound));
                }
                return Some(Quantile::Value(
                    low_bound + (bound - low_bound) * (rank - low_cum) / inside,
                ));
            }
            lower = (bound, cum);
        }
        None
    }

    /// `self − earlier`: what was counted between two scrapes of the same series.
    pub(crate) fn minus(&self, earlier: &Histogram) -> Histogram {
        let mut out = self.clone();
        for (b, e) in out.buckets.iter_mut().zip(&earlier.buckets) {
            if b.0 == e.0 {
                b.1 = (b.1 - e.1).max(0.0);
            }
        }
        out.count = (self.count - earlier.count).max(0.0);
        out.sum = (self.sum - earlier.sum).max(0.0);
        out
    }

    /// The labels as `a="x",b="y"` (empty when none).
    pub(crate) fn label_text(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn key(&self) -> (String, Labels) {
        (self.name.clone(), self.labels.clone())
    }
}

/// Every histogram in a text-format exposition, in name and label order.
pub(crate) fn parse_histograms(text: &str) -> anyhow::Result<Vec<Histogram>> {
    type Key = (String, Labels);
    let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<Key, f64> = BTreeMap::new();
    let mut sums: BTreeMap<Key, f64> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, mut labels, value) =
            parse_sample(line).with_context(|| format!("line {}: {line:?}", n + 1))?;
        if let Some(base) = name.strip_suffix("_bucket") {
            let Some(i) = labels.iter().position(|(k, _)| k == "le") else {
                continue;
            };
            let le = parse_value(&labels.remove(i).1)
                .with_context(|| format!("line {}: bad le in {line:?}", n + 1))?;
            labels.sort();
            buckets
                .entry((base.to_string(), labels))
                .or_default()
                .push((le, value));
        } else if let Some(base) = name.strip_suffix("_count") {
            labels.sort();
            counts.insert((base.to_string(), labels), value);
        } else if let Some(base) = name.strip_suffix("_sum") {
            labels.sort();
            sums.insert((base.to_string(), labels), value);
        }
    }
    let mut out = Vec::new();
    for (key, mut b) in buckets {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        if b.last().is_none_or(|l| !l.0.is_infinite()) {
            bail!("histogram {} has no +Inf bucket", key.0);
        }
        let inf = b.last().map_or(0.0, |l| l.1);
        out.push(Histogram {
            count: counts.get(&key).copied().unwrap_or(inf),
            sum: sums.get(&key).copied().unwrap_or(0.0),
            name: key.0,
            labels: key.1,
            buckets: b,
        });
    }
    Ok(out)
}

/// The sum over every label set of the counter or gauge `name` (OpenMetrics writes a counter
/// as `NAME_total`; either spelling counts). Lines that do not parse are skipped.
pub(crate) fn counter_sum(text: &str, name: &str) -> f64 {
    let total = format!("{name}_total");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| parse_sample(l).ok())
        .filter(|(n, _, _)| *n == name || *n == total)
        .map(|(_, _, v)| v)
        .sum()
}

/// Sums histograms with the same name, labels and bounds (e.g. one scrape per node).
pub(crate) fn merge(all: impl IntoIterator<Item = Histogram>) -> Vec<Histogram> {
    let mut by_key: BTreeMap<(String, Labels), Histogram> = BTreeMap::new();
    for h in all {
        match by_key.get_mut(&h.key()) {
            Some(acc) if same_bounds(acc, &h) => {
                for (a, b) in acc.buckets.iter_mut().zip(&h.buckets) {
                    a.1 += b.1;
                }
                acc.count += h.count;
                acc.sum += h.sum;
            }
            // Different bounds for one series (two binaries?): keep the first rather than mix.
            Some(_) => {}
            None => {
                by_key.insert(h.key(), h);
            }
        }
    }
    by_key.into_values().collect()
}

/// `after − before`, series by series; a series absent before counts from zero.
pub(crate) fn delta(after: &[Histogram], before: &[Histogram]) -> Vec<Histogram> {
    after
        .iter()
        .map(|a| match before.iter().find(|b| b.key() == a.key()) {
            Some(b) if same_bounds(a, b) => a.minus(b),
            _ => a.clone(),
        })
        .collect()
}

fn same_bounds(a: &Histogram, b: &Histogram) -> bool {
    a.buckets.len() == b.buckets.len() && a.buckets.iter().zip(&b.buckets).all(|(x, y)| x.0 == y.0)
}

/// Label names and values.
type Labels = Vec<(String, String)>;

/// Splits `name{labels} value [timestamp] [# exemplar]`.
fn parse_sample(line: &str) -> anyhow::Result<(String, Labels, f64)> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .context("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        bail!("no metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let (l, after) = parse_labels(r)?;
        labels = l;
        rest = after;
    }
    // An OpenMetrics exemplar follows " # ".
    let rest = rest.split(" # ").next().unwrap_or_default();
    let value = rest.split_whitespace().next().context("no value")?;
    Ok((name.to_string(), labels, parse_value(value)?))
}

/// Parses `a="x",b="y\"z"}` (after the `{`); returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> anyhow::Result<(Labels, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').context("label without =")?;
        let name = s[..eq].trim().to_string();
        let after = s[eq + 1..].trim_start();
        let mut chars = after.char_indices();
        if chars.next().map(|c| c.1) != Some('"') {
            bail!("label {name} has no quoted value");
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                value.push(if c == 'n' { '\n' } else { c });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            } else {
                value.push(c);
            }
        }
        let end = end.with_context(|| format!("label {name}'s value is not closed"))?;
        labels.push((name, value));
        s = after[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn parse_value(v: &str) -> anyhow::Result<f64> {
    match v {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => v.parse().with_context(|| format!("bad number {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP bavard_lookup_duration_seconds Duration of DHT lookups.
# TYPE bavard_lookup_duration_seconds histogram
bavard_lookup_duration_seconds_sum 1.5
bavard_lookup_duration_seconds_count 10
bavard_lookup_duration_seconds_bucket{le="0.005"} 0
bavard_lookup_duration_seconds_bucket{le="0.01"} 5
bavard_lookup_duration_seconds_bucket{le="0.1"} 9
bavard_lookup_duration_seconds_bucket{le="+Inf"} 10
# TYPE bavard_kv_stage_seconds histogram
bavard_kv_stage_seconds_bucket{stage="commit",op="put",le="0.001"} 2 # {trace_id="x"} 0.0004 1
bavard_kv_stage_seconds_bucket{stage="commit",op="put",le="1.0"} 4
bavard_kv_stage_seconds_bucket{stage="commit",op="put",le="+Inf"} 4
bavard_kv_stage_seconds_count{op="put",stage="commit"} 4
bavard_kv_stage_seconds_sum{op="put",stage="commit"} 0.7
# TYPE bavard_records_stored gauge
bavard_records_stored 12
# EOF
"#;

    fn lookup() -> Histogram {
        parse_histograms(SCRAPE).unwrap().remove(1)
    }

    #[test]
    fn histograms_are_read_with_their_labels_count_and_sum_and_nothing_else() {
        let hs = parse_histograms(SCRAPE).unwrap();
        assert_eq!(hs.len(), 2, "{hs:?}");
        let stage = &hs[0];
        assert_eq!(stage.name, "bavard_kv_stage_seconds");
        assert_eq!(
            stage.labels,
            [
                ("op".into(), "put".into()),
                ("stage".into(), "commit".into())
            ]
        );
        assert_eq!(
            stage.buckets,
            [(0.001, 2.0), (1.0, 4.0), (f64::INFINITY, 4.0)]
        );
        assert_eq!((stage.count, stage.sum), (4.0, 0.7));
        assert_eq!(stage.label_text(), r#"op="put",stage="commit""#);
        let lookup = &hs[1];
        assert_eq!(lookup.name, "bavard_lookup_duration_seconds");
        assert!(lookup.labels.is_empty());
        assert_eq!((lookup.count, lookup.sum), (10.0, 1.5));
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_that_reaches_the_rank() {
        let h = lookup();
        // Rank 5 of 10 is the top of the (0.005, 0.01] bucket.
        assert_eq!(h.quantile(0.5), Some(Quantile::Value(0.01)));
        // Rank 7 is half-way through (0.01, 0.1], which holds ranks 6..=9.
        let Some(Quantile::Value(v)) = h.quantile(0.7) else {
            panic!()
        };
        assert!((v - 0.055).abs() < 1e-12, "{v}");
        // The first bucket starts at 0.
        let first = parse_histograms("a_bucket{le=\"2\"} 4\na_bucket{le=\"+Inf\"} 4\n").unwrap();
        assert_eq!(first[0].quantile(0.25), Some(Quantile::Value(0.5)));
    }

    #[test]
    fn a_quantile_in_the_inf_bucket_is_only_known_to_be_above_the_highest_bound() {
        let h = lookup();
        assert_eq!(h.quantile(0.99), Some(Quantile::Above(0.1)));
        assert_eq!(Quantile::Above(0.1).scaled(1000.0).to_string(), ">100");
        assert_eq!(Quantile::Value(0.0123).scaled(1000.0).to_string(), "12.3");
    }

    #[test]
    fn an_empty_histogram_has_no_quantile() {
        let h = parse_histograms("a_bucket{le=\"1\"} 0\na_bucket{le=\"+Inf\"} 0\n").unwrap();
        assert_eq!(h[0].quantile(0.5), None);
    }

    #[test]
    fn scrapes_of_several_nodes_sum_and_two_scrapes_subtract() {
        let one = parse_histograms(SCRAPE).unwrap();
        let merged = merge(one.clone().into_iter().chain(one.clone()));
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[1].count, 20.0);
        assert_eq!(merged[1].buckets[1], (0.01, 10.0));
        let d = delta(&merged, &one);
        assert_eq!(d[1].count, 10.0);
        assert_eq!(d[1].buckets, one[1].buckets);
        // A series that appeared between the scrapes counts from zero.
        assert_eq!(delta(&one, &[])[0], one[0]);
    }

    #[test]
    fn counters_sum_over_label_sets_with_or_without_the_total_suffix() {
        let text = "# TYPE bavard_kad_requests_served counter\n\
            bavard_kad_requests_served_total{kind=\"find_node\"} 3\n\
            bavard_kad_requests_served_total{kind=\"get\"} 4.5\n\
            bavard_kad_requests_served_created 1700000000\n\
            bavard_records_stored 12\n\
            garbage line\n";
        assert_eq!(counter_sum(text, "bavard_kad_requests_served"), 7.5);
        assert_eq!(counter_sum(text, "bavard_records_stored"), 12.0);
        assert_eq!(counter_sum(text, "absent"), 0.0);
    }

    #[test]
    fn label_values_may_hold_escaped_quotes_commas_and_braces() {
        let text = "x_bucket{path=\"/a,\\\"b\\\"}\",le=\"1\"} 1\nx_bucket{path=\"/a,\\\"b\\\"}\",le=\"+Inf\"} 1\n";
        let h = parse_histograms(text).unwrap();
        assert_eq!(h[0].labels, [("path".into(), "/a,\"b\"}".into())]);
    }

    #[test]
    fn malformed_lines_are_errors_that_name_the_line() {
        let err = parse_histograms("ok 1\nx_bucket{le=\"1\" 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse_histograms("x_bucket{le=\"1\"} abc\n").is_err());
        assert!(
            parse_histograms("x_bucket{le=\"1\"} 1\n").is_err(),
            "no +Inf"
        );
    }
}
