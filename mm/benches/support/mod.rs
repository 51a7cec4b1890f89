//! Reporting shared by the host benchmarks: progress lines on stderr,
//! tables with self-describing columns on stdout, and one CSV row per
//! figure in `build/bench/<bench>.csv` for `make plots`; and, in
//! [`start_line`], the spinning start and the self-timed spans of the
//! benchmarks' threads.
//!
//! A benchmark (`harness = false`) takes it in with `mod support;` (cargo
//! builds no target of its own from `benches/support/mod.rs`):
//!
//! ```ignore
//! mod support;
//! use support::{Report, Row};
//!
//! let mut report = Report::new("pmm", 2); // bench name, progress steps
//! for fill in [50, 90] {
//!     let workload = format!("pairs-fill-{fill}");
//!     report.step(&workload, "this-pmm and bit-by-bit");
//!     let (ours, naive) = measure(fill);
//!     report.record(Row::mean(&workload, "this-pmm", "ns/pair", ours).baseline());
//!     report.record(Row::mean(&workload, "bit-by-bit", "ns/pair", naive)
//!         .against("this-pmm", naive / ours));
//!     report.table(&workload, "alloc+free pairs", "allocator");
//! }
//! report.finish();
//! ```
//!
//! # The results file
//!
//! [`Report::new`] opens `<dir>/<bench>.csv` for appending, where `<dir>`
//! is `$INCROOS_BENCH_DIR` (the Makefile sets it; relative paths are from
//! the workspace root) or else `build/bench` in the workspace root; the
//! directory is made if missing. Every [`Report::record`] appends one row
//! at once, so an interrupted run keeps what it measured. Runs accumulate;
//! a reader takes the newest row of each (workload, subject, metric). A
//! file with another header is moved to `<bench>.csv.old` first. Columns:
//!
//! | column | what it holds |
//! |---|---|
//! | `run` | when the benchmark process started, UTC, `2026-12-01T13:45:07Z`: the rows of one run share it |
//! | `commit` | `$INCROOS_BENCH_COMMIT` (the Makefile: `git describe --always --dirty`), or empty |
//! | `bench` | `heap`, `paging`, `pmm`: the benchmark binary |
//! | `workload` | what was run, kebab-case: `mix-300-live`, `pairs-fill-50` |
//! | `subject` | what was measured running it: `this-heap`, `talc`, `4k-pages` |
//! | `metric` | which figure: see below |
//! | `unit` | the value's unit: `ns/op`, `ns/pair`, `ns`, `us`, `%`, `frames` |
//! | `value` | the figure (6 significant digits) |
//! | `baseline` | the subject `ratio` compares with, in the same run; the baseline's own rows name themselves; empty: no comparison |
//! | `ratio` | this row's value / the baseline's value for the same workload and metric (for `mean`, ns/op over ns/op: 1.5 takes 1.5 times as long); empty with `baseline` |
//!
//! Metrics. Time per operation comes in two kinds that must not be read as
//! one, so they have different names:
//!
//! * `mean` (`ns/op`, or `ns/<what one operation is>`): throughput, a whole
//!   run's time divided by its operations with nothing timed per
//!   operation; where a benchmark repeats runs, the median of their means.
//! * `p50`, `p99`, `p99.9`, `max` (`ns`): latency, percentiles of single
//!   operations each timed on its own (TSC reads around it), from a
//!   separate run, and the slowest of them. Timer overhead and resolution
//!   are included, so these do not add up to `mean`; `max` on a host
//!   includes interrupts and preemption, so it says what a run met, not
//!   the algorithm's bound (the docs state those).
//!
//! Other metrics say what they are: `efficiency` (`%`), `time` (one timed
//! piece of work, not per operation), `page-table-frames`.
//!
//! Printed tables ([`Report::table`]) head each column `metric unit`
//! (`mean ns/op`, `p99.9 ns`) and each ratio column `metric unit vs
//! baseline`; [`Report::finish`] prints a legend of the metrics used.

#![allow(
    dead_code,
    reason = "each benchmark compiles this module on its own and uses part of it"
)]

pub mod start_line;

use std::fmt::{self, Display};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The CSV header, the schema in the module doc.
pub const HEADER: &str = "run,commit,bench,workload,subject,metric,unit,value,baseline,ratio";

/// Throughput: a run's time / its operations, nothing timed per operation.
pub const MEAN: &str = "mean";
/// The latency percentiles [`Report::latencies`] records, with their
/// quantiles.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)];

/// The middle value of `values` (the upper one of an even count): the
/// figure every benchmark reports over repeated runs or rounds.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// TSC ticks per nanosecond, measured over 100 ms of sleep (for turning
/// per-operation TSC readings into the latency rows).
pub fn tsc_ghz() -> f64 {
    let start = Instant::now();
    // SAFETY: RDTSC is available on every x86-64 CPU.
    let tsc = unsafe { std::arch::x86_64::_rdtsc() };
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: as above.
    let cycles = unsafe { std::arch::x86_64::_rdtsc() } - tsc;
    cycles as f64 / start.elapsed().as_nanos() as f64
}

/// One figure: a row of the CSV and a cell of a printed table.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was run (kebab-case).
    pub workload: String,
    /// What was measured running it.
    pub subject: String,
    /// Which figure (`mean`, `p99`, `efficiency`, ...).
    pub metric: String,
    /// The value's unit.
    pub unit: String,
    /// The figure.
    pub value: f64,
    /// The subject compared with and this value over its value.
    pub comparison: Option<(String, f64)>,
}

impl Row {
    /// A figure of any metric.
    pub fn new(workload: &str, subject: &str, metric: &str, unit: &str, value: f64) -> Self {
        Self {
            workload: workload.to_owned(),
            subject: subject.to_owned(),
            metric: metric.to_owned(),
            unit: unit.to_owned(),
            value,
            comparison: None,
        }
    }

    /// Throughput: `value` is a run's time / its operations in `unit`
    /// (`ns/op`, `ns/pair`), with nothing timed per operation.
    pub fn mean(workload: &str, subject: &str, unit: &str, value: f64) -> Self {
        Self::new(workload, subject, MEAN, unit, value)
    }

    /// Compares with `baseline`'s row of the same workload and metric:
    /// `ratio` is this value over the baseline's, as the benchmark
    /// measured it (for example the median of per-round ratios).
    pub fn against(mut self, baseline: &str, ratio: f64) -> Self {
        self.comparison = Some((baseline.to_owned(), ratio));
        self
    }

    /// Marks this row as the baseline the others compare with (ratio 1).
    pub fn baseline(self) -> Self {
        let subject = self.subject.clone();
        self.against(&subject, 1.0)
    }

    /// The row's CSV fields after `run`, `commit` and `bench`.
    fn fields(&self) -> [String; 7] {
        let (baseline, ratio) = match &self.comparison {
            Some((baseline, ratio)) => (baseline.clone(), significant(*ratio)),
            None => (String::new(), String::new()),
        };
        [
            self.workload.clone(),
            self.subject.clone(),
            self.metric.clone(),
            self.unit.clone(),
            significant(self.value),
            baseline,
            ratio,
        ]
    }
}

/// One benchmark run: progress, tables and the results file.
pub struct Report {
    bench: &'static str,
    run: String,
    commit: String,
    started: Instant,
    steps: usize,
    step: usize,
    rows: Vec<Row>,
    path: PathBuf,
    csv: File,
}

impl Report {
    /// Starts benchmark `bench` (the CSV's name) of `steps` progress
    /// steps, and opens its results file.
    ///
    /// Panics with the path if the file cannot be written: a benchmark
    /// that cannot keep its results should not spend minutes running.
    pub fn new(bench: &'static str, steps: usize) -> Self {
        let path = results_dir().join(format!("{bench}.csv"));
        let csv = open_results(&path)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        Self {
            bench,
            run: utc_timestamp(SystemTime::now()),
            commit: std::env::var("INCROOS_BENCH_COMMIT").unwrap_or_default(),
            started: Instant::now(),
            steps,
            step: 0,
            rows: Vec::new(),
            path,
            csv,
        }
    }

    /// Prints the next progress line to stderr, `[heap 3/49] mix-300-live:
    /// round 2/7, talc rlsf (4.1 s)`, with the time since the start.
    pub fn step(&mut self, workload: &str, doing: impl Display) {
        self.step += 1;
        eprintln!(
            "[{} {}/{}] {workload}: {doing} ({:.1} s)",
            self.bench,
            self.step,
            self.steps.max(self.step),
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Keeps `row` for the tables and appends it to the results file.
    ///
    /// Panics if the value or ratio is not finite (a benchmark bug) or the
    /// file cannot be written.
    pub fn record(&mut self, row: Row) {
        assert!(
            row.value.is_finite() && row.comparison.as_ref().is_none_or(|c| c.1.is_finite()),
            "{}/{}/{}: not a finite figure: {row:?}",
            row.workload,
            row.subject,
            row.metric
        );
        let fields = [self.run.clone(), self.commit.clone(), self.bench.to_owned()]
            .into_iter()
            .chain(row.fields())
            .map(|field| quote(&field))
            .collect::<Vec<_>>();
        writeln!(self.csv, "{}", fields.join(","))
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", self.path.display()));
        self.rows.push(row);
    }

    /// Records the latency percentiles ([`PERCENTILES`]) of `samples`, the
    /// times of single operations in ns (sorted here).
    pub fn latencies(&mut self, workload: &str, subject: &str, samples: &mut [f64]) {
        assert!(!samples.is_empty(), "{workload}/{subject}: no samples");
        samples.sort_by(f64::total_cmp);
        for (metric, quantile) in PERCENTILES {
            let index = ((samples.len() - 1) as f64 * quantile) as usize;
            self.record(Row::new(workload, subject, metric, "ns", samples[index]));
        }
    }

    /// Prints the rows of `workload` as a table on stdout, one line per
    /// subject (column head `subject_head`), one column per metric
    /// (`mean ns/op`, `p99.9 ns`) and per compared metric (`mean ns/op vs
    /// this-heap`), under the line `workload: title`.
    pub fn table(&self, workload: &str, title: &str, subject_head: &str) {
        let rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.workload == workload)
            .collect();
        let mut subjects: Vec<&str> = Vec::new();
        let mut columns: Vec<Column> = Vec::new();
        for row in &rows {
            if !subjects.contains(&row.subject.as_str()) {
                subjects.push(&row.subject);
            }
            let value = Column::Value(&row.metric, &row.unit);
            if !columns.contains(&value) {
                columns.push(value);
            }
        }
        for row in &rows {
            if let Some((baseline, _)) = &row.comparison {
                let ratio = Column::Ratio(&row.metric, &row.unit, baseline);
                if !columns.contains(&ratio) {
                    columns.push(ratio);
                }
            }
        }
        let cell = |subject: &str, column: &Column| -> String {
            let (metric, unit) = match column {
                Column::Value(metric, unit) | Column::Ratio(metric, unit, _) => (metric, unit),
            };
            let Some(row) = rows
                .iter()
                .find(|r| r.subject == subject && &r.metric == metric && &r.unit == unit)
            else {
                return String::from("-");
            };
            match (column, &row.comparison) {
                (Column::Value(..), _) => human(row.value),
                (Column::Ratio(.., baseline), Some((b, _))) if b == baseline && b == subject => {
                    String::from("baseline")
                }
                (Column::Ratio(.., baseline), Some((b, ratio))) if b == baseline => {
                    format!("{}x", human(*ratio))
                }
                (Column::Ratio(..), _) => String::from("-"),
            }
        };
        let mut lines: Vec<Vec<String>> = vec![std::iter::once(subject_head.to_owned())
            .chain(columns.iter().map(ToString::to_string))
            .collect()];
        for subject in &subjects {
            lines.push(
                std::iter::once((*subject).to_owned())
                    .chain(columns.iter().map(|column| cell(subject, column)))
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..=columns.len())
            .map(|i| lines.iter().map(|line| line[i].len()).max().unwrap_or(0))
            .collect();
        println!();
        println!("{workload}: {title}");
        for line in &lines {
            let mut text = format!("  {:<width$}", line[0], width = widths[0]);
            for (cell, width) in line[1..].iter().zip(&widths[1..]) {
                text.push_str(&format!("  {cell:>width$}"));
            }
            println!("{}", text.trim_end());
        }
    }

    /// Prints what the columns of the tables mean and where the rows went.
    pub fn finish(self) {
        let has = |metric: &str| self.rows.iter().any(|r| r.metric == metric);
        println!();
        println!("columns:");
        if has(MEAN) {
            println!(
                "  mean ns/op (ns/pair, ...): throughput, a run's time / its operations, nothing timed"
            );
            println!("      per operation (over repeated runs, the median of their means)");
        }
        if PERCENTILES.iter().any(|(metric, _)| has(metric)) {
            println!(
                "  p50, p99, p99.9, max ns: latency, percentiles of single operations each timed with the"
            );
            println!(
                "      TSC in a separate run, and the slowest (timer included; they do not add up to the"
            );
            println!(
                "      mean; max includes the host's interrupts and preemption, not only the algorithm)"
            );
        }
        if self.rows.iter().any(|r| r.comparison.is_some()) {
            println!(
                "  X vs B: this subject's X over B's, measured in the same run (2.00x: twice B's X;"
            );
            println!("      for a time, 2.00x takes twice as long as B)");
        }
        println!(
            "results: {} rows appended to {}",
            self.rows.len(),
            self.path.display()
        );
    }
}

/// A column of a printed table.
#[derive(PartialEq)]
enum Column<'a> {
    /// The values of a metric (metric, unit).
    Value(&'a str, &'a str),
    /// The ratios of a metric to a baseline (metric, unit, baseline).
    Ratio(&'a str, &'a str, &'a str),
}

impl Display for Column<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Self::Value(metric, unit) | Self::Ratio(metric, unit, _)) = self;
        // `page-table-frames frames` would say it twice.
        if metric.ends_with(unit) {
            write!(f, "{metric}")?;
        } else {
            write!(f, "{metric} {unit}")?;
        }
        match self {
            Self::Value(..) => Ok(()),
            Self::Ratio(.., baseline) => write!(f, " vs {baseline}"),
        }
    }
}

/// `$INCROOS_BENCH_DIR`, relative to the workspace root, or `build/bench`
/// there (cargo runs benchmarks in the package's directory, `mm/`).
fn results_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("mm/ lies inside the workspace");
    match std::env::var_os("INCROOS_BENCH_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("build/bench"),
    }
}

/// Opens `path` for appending, with the header when new; a file with
/// another header (an older schema) is moved to `.csv.old` first.
fn open_results(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    if let Ok(file) = File::open(path) {
        let mut first = String::new();
        BufReader::new(file).read_line(&mut first)?;
        if !first.is_empty() && first.trim_end() != HEADER {
            let old = path.with_extension("csv.old");
            eprintln!(
                "{}: another schema; moved to {}",
                path.display(),
                old.display()
            );
            fs::rename(path, old)?;
        }
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    if file.metadata()?.len() == 0 {
        writeln!(file, "{HEADER}")?;
    }
    Ok(file)
}

/// A CSV field, quoted if it holds a comma, a quote or a line break.
fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// `value` with 6 significant digits (no exponent).
fn significant(value: f64) -> String {
    with_digits(value, 6)
}

/// `value` for a table: 3 significant digits, whole numbers from 100 up.
fn human(value: f64) -> String {
    with_digits(value, 3)
}

/// `value` with `digits` significant digits, or all of its integer
/// digits; whole numbers (counts) without decimals.
fn with_digits(value: f64, digits: i32) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let magnitude = if value == 0.0 {
        0
    } else {
        value.abs().log10().floor() as i32
    };
    let decimals = (digits - 1 - magnitude).clamp(0, 12) as usize;
    format!("{value:.decimals$}")
}

/// `time` as `YYYY-MM-DDTHH:MM:SSZ` (UTC), by the civil-from-days
/// algorithm of Howard Hinnant's date library.
fn utc_timestamp(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, second_of_day) = ((seconds / 86_400) as i64, seconds % 86_400);
    let shifted = days + 719_468; // days since 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}
