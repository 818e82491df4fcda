//! Percentiles of a list of numbers, for the scripts that measure something one sample at a
//! time (e.g. `scripts/bench.sh`: how long a published article takes to reach a follower's
//! feed).
//!
//! The numbers are whole, non-negative values (milliseconds, say), whitespace-separated, read
//! from a file or stdin. They are recorded in an HDR histogram with three significant figures,
//! as conduit-load records latencies: a quantile is exact below 2048 and within 0.1 % above.

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// Arguments of `chaos-report percentiles`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Quantiles to print, in order (0 < q <= 1); the maximum follows them.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.99")]
    pub quantiles: Vec<f64>,
    /// File of numbers; stdin when absent or `-`.
    pub file: Option<PathBuf>,
}

/// Records every number of `text` in a histogram.
///
/// # Returns
/// An error naming the first token that is not a whole, non-negative number, or when there is
/// none at all.
pub fn histogram(text: &str) -> Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new(3).context("creating the histogram")?;
    for token in text.split_whitespace() {
        let value: u64 = token
            .parse()
            .with_context(|| format!("{token:?} is not a whole, non-negative number"))?;
        hist.record(value)
            .with_context(|| format!("recording {value}"))?;
    }
    anyhow::ensure!(!hist.is_empty(), "no numbers to take percentiles of");
    Ok(hist)
}

/// The value at each quantile, then the maximum.
pub fn values(hist: &Histogram<u64>, quantiles: &[f64]) -> Vec<u64> {
    quantiles
        .iter()
        .map(|q| hist.value_at_quantile(*q))
        .chain(std::iter::once(hist.max()))
        .collect()
}

/// Runs `chaos-report percentiles`: one line, the values separated by spaces.
pub fn run(args: &Args) -> Result<String> {
    for q in &args.quantiles {
        anyhow::ensure!(*q > 0.0 && *q <= 1.0, "quantile {q} is not in (0, 1]");
    }
    let text = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            text
        }
    };
    let hist = histogram(&text)?;
    let line: Vec<String> = values(&hist, &args.quantiles)
        .iter()
        .map(u64::to_string)
        .collect();
    Ok(line.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_the_99th_percentile_and_the_maximum_of_one_to_a_hundred() {
        let text: String = (1..=100).rev().map(|n| format!("{n}\n")).collect();
        let hist = histogram(&text).unwrap();
        assert_eq!(values(&hist, &[0.5, 0.99]), vec![50, 99, 100]);
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let hist = histogram("  7 \n").unwrap();
        assert_eq!(values(&hist, &[0.5, 0.99]), vec![7, 7, 7]);
    }

    #[test]
    fn large_values_keep_three_significant_figures() {
        let hist = histogram("12345 20000 29999").unwrap();
        let got = values(&hist, &[0.5]);
        assert!((20000..=20020).contains(&got[0]), "{got:?}");
        assert!((29999..=30029).contains(&got[1]), "{got:?}");
    }

    #[test]
    fn no_numbers_or_a_word_among_them_is_an_error() {
        assert!(histogram(" \n").is_err());
        assert!(histogram("1 2 x 3").is_err());
        assert!(histogram("1.5").is_err());
        assert!(histogram("-3").is_err());
    }
}
