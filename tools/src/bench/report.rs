//! Turns a [`Report`] into what a reader sees: a Markdown table of the paths, Sluice
//! against plain QEMU under each clock, a per-stage breakdown of where Sluice's time goes,
//! the Linux guest's figures, and the plots beside them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::model::{self, Bucket, Clock, Report, Run, Side, StageSums, SEGMENTS};
use super::plot;
use crate::figures;

/// The name of the per-iteration time a path spends outside every traced segment.
pub const OUTSIDE: &str = "outside the trace";

/// The clocks in the order the report shows them.
const CLOCKS: [Clock; 2] = [Clock::Icount, Clock::Wall];

/// The first run of `side` under `clock` with tracing `trace` that produced figures.
fn find(report: &Report, side: Side, clock: Clock, trace: bool) -> Option<&Run> {
    report.runs.iter().find(|r| r.side == side && r.clock == clock && r.trace == trace && r.error.is_none())
}

/// The run the per-stage figures come from: Sluice, traced, `-icount` if there is one,
/// else wall clock.
fn stage_run(report: &Report) -> Option<&Run> {
    CLOCKS.iter().find_map(|&clock| find(report, Side::Sluice, clock, true))
}

/// Where one path's iteration goes, per iteration.
struct Breakdown {
    /// Exits per iteration, over every reason.
    exits: f64,
    /// ns per iteration for each of [`SEGMENTS`], then [`OUTSIDE`] (the guest's mean less
    /// the segments; negative when the trace costs more than it saw).
    segments: Vec<(String, f64)>,
}

/// The breakdown of `path` from the stage sums of its phase, all reasons together; `None`
/// for a path with no iterations. Paths that share a phase each get the whole phase.
fn breakdown(path: &model::Path, stages: &[StageSums]) -> Option<Breakdown> {
    if path.n == 0 {
        return None;
    }
    let n = path.n as f64;
    let phase: Vec<&StageSums> = stages.iter().filter(|s| s.phase == path.phase).collect();
    let exits: u64 = phase.iter().map(|s| s.exits).sum();
    let mut segments: Vec<(String, f64)> = SEGMENTS
        .iter()
        .map(|&name| {
            let total: u64 =
                phase.iter().flat_map(|s| &s.ns).filter(|(seg, _)| seg == name).map(|(_, v)| v).sum();
            (name.to_owned(), total as f64 / n)
        })
        .collect();
    let traced: f64 = segments.iter().map(|(_, v)| v).sum();
    segments.push((OUTSIDE.to_owned(), path.mean - traced));
    Some(Breakdown { exits: exits as f64 / n, segments })
}

/// Rounds to the nearest integer, halves away from zero.
fn int(value: f64) -> i64 {
    value.round() as i64
}

/// A figure or `n/a`.
fn or_na<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

/// The heading of one clock's table.
fn clock_heading(clock: Clock) -> &'static str {
    match clock {
        Clock::Icount => "### -icount shift=0 (1 ns = 1 guest instruction)",
        Clock::Wall => "### wall clock (ns, noisy under TCG)",
    }
}

/// One clock's comparison table.
fn clock_section(report: &Report, clock: Clock) -> String {
    let mut text = format!("{}\n\n", clock_heading(clock));
    let Some(sluice) = find(report, Side::Sluice, clock, true) else {
        text += "No traced Sluice run with figures under this clock.\n";
        return text;
    };
    let reference = find(report, Side::Reference, clock, false);
    let untraced = find(report, Side::Sluice, clock, false);
    text += "| path | Sluice p50 | untraced p50 | plain QEMU p50 | ratio | Sluice min | Sluice p99 \
             | Sluice max | plain QEMU p99 | tracing cost |\n";
    text += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    for path in &sluice.paths {
        let same = |run: Option<&Run>| run?.paths.iter().find(|p| p.name == path.name).cloned();
        let reference = same(reference);
        let untraced = same(untraced);
        let ratio = reference
            .as_ref()
            .filter(|r| r.p50 != 0)
            .map(|r| format!("{:.2}x", path.p50 as f64 / r.p50 as f64));
        let cost = untraced.as_ref().map(|u| format!("{:+}", path.p50 as i128 - u.p50 as i128));
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            path.name,
            path.p50,
            or_na(untraced.as_ref().map(|u| u.p50)),
            or_na(reference.as_ref().map(|r| r.p50)),
            or_na(ratio),
            path.min,
            path.p99,
            path.max,
            or_na(reference.as_ref().map(|r| r.p99)),
            or_na(cost),
        );
    }
    text
}

/// The per-stage breakdown of the traced Sluice run.
fn stage_section(run: &Run) -> String {
    let mut text =
        format!("### per-stage breakdown: Sluice, {}, traced (ns per iteration)\n\n", run.clock.label());
    if run.stages.is_empty() {
        text += "No stage sums: the hypervisor reported no `\"trace\":\"stages\"` lines.\n";
        return text;
    }
    let _ = writeln!(text, "| path | exits/iter | {} | {OUTSIDE} | guest mean |", SEGMENTS.join(" | "));
    let _ = writeln!(text, "| --- |{}", " ---: |".repeat(SEGMENTS.len() + 3));
    for path in &run.paths {
        let _ = match breakdown(path, &run.stages) {
            Some(b) => {
                let values: Vec<String> = b.segments.iter().map(|(_, v)| int(*v).to_string()).collect();
                writeln!(
                    text,
                    "| {} | {:.1} | {} | {} |",
                    path.name,
                    b.exits,
                    values.join(" | "),
                    int(path.mean)
                )
            }
            None => writeln!(text, "| {} |{}", path.name, " n/a |".repeat(SEGMENTS.len() + 3)),
        };
    }
    text
}

/// The VM-to-VM channel's table: each path under each clock, set against the
/// floor of the traps it takes at least (the `hvc-null` of the same clock,
/// untraced where there is such a run: one for a one-way message, the sender's
/// notify; two for a round trip),
/// and the 64 KiB rounds as a throughput.
fn channel_section(report: &Report) -> String {
    let mut text = String::from(
        "### VM-to-VM channel (Sluice only: plain QEMU has no equivalent)\n\n\
         | path | clock | p50 | p99 | hvc-null floor | above the floor | throughput |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for run in report.channel.iter().filter(|r| !r.trace) {
        let floor = [false, true]
            .into_iter()
            .filter_map(|trace| find(report, Side::Sluice, run.clock, trace))
            .find_map(|r| r.paths.iter().find(|p| p.name == "hvc-null"))
            .map(|p| p.p50);
        for path in &run.paths {
            let traps = match path.name.as_str() {
                "channel-one-way" => Some(1),
                "channel-round-trip" => Some(2),
                _ => None,
            };
            let floor = floor.zip(traps).map(|(f, n)| f * n);
            let above = floor.map(|f| path.p50 as i128 - f as i128);
            let throughput = (path.name == "channel-64k" && path.p50 > 0)
                .then(|| format!("{:.1} MiB/s", 65536.0 / path.p50 as f64 * 1e9 / (1 << 20) as f64));
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} | {} | {} |",
                path.name,
                run.clock.label(),
                path.p50,
                path.p99,
                or_na(floor),
                or_na(above),
                throughput.unwrap_or_default()
            );
        }
        if let Some(error) = &run.error {
            let _ = writeln!(text, "| (failed) | {} | {error} | | | | |", run.clock.label());
        }
    }
    text
}

/// The Linux guest's table.
fn linux_section(rows: &[model::LinuxRow]) -> String {
    let mut text = String::from("### Linux guest\n\n");
    text += figures::TABLE_HEAD;
    for row in rows {
        let ran = row.boot_to_init_s.is_some();
        let figures = [row.boot_to_init_s, row.read_mib_s, row.direct_mib_s, row.direct_read_us];
        text += &figures::table_row(&row.label, figures, ran);
    }
    text
}

/// The whole report as Markdown: per clock present (`-icount` first), Sluice against
/// plain QEMU; the per-stage breakdown of the traced Sluice run (`-icount`, else wall);
/// the Linux guest's figures; the runs that failed. Sections are separated by a blank line.
pub fn table(report: &Report) -> String {
    let mut sections = Vec::new();
    for clock in CLOCKS {
        if report.runs.iter().any(|r| r.clock == clock) {
            sections.push(clock_section(report, clock));
        }
    }
    if let Some(run) = stage_run(report) {
        sections.push(stage_section(run));
    }
    if !report.channel.is_empty() {
        sections.push(channel_section(report));
    }
    if let Some(run) = report.channel.iter().find(|r| r.trace && r.clock == Clock::Icount) {
        sections.push(stage_section(run).replacen(
            "### per-stage breakdown: Sluice,",
            "### per-stage breakdown of the channel, both VMs' CPUs summed (a round trip's exits for the ping-pong paths):",
            1,
        ));
    }
    if !report.linux.is_empty() {
        sections.push(linux_section(&report.linux));
    }
    let failed: Vec<String> = report
        .runs
        .iter()
        .filter_map(|r| Some(format!("- {}, {}: {}\n", r.side.label(), r.clock.label(), r.error.as_ref()?)))
        .collect();
    if !failed.is_empty() {
        sections.push(format!("### runs that failed\n\n{}", failed.concat()));
    }
    sections.join("\n")
}

/// The `n` biggest per-iteration segments of `path` (including [`OUTSIDE`]) in the traced
/// Sluice run (`-icount`, else wall), biggest first; empty when there is no such run or
/// path.
pub fn top_contributors(report: &Report, path: &str, n: usize) -> Vec<(String, f64)> {
    let Some(run) = stage_run(report) else { return Vec::new() };
    let Some(b) = run.paths.iter().find(|p| p.name == path).and_then(|p| breakdown(p, &run.stages)) else {
        return Vec::new();
    };
    let mut segments = b.segments;
    segments.sort_by(|a, b| b.1.total_cmp(&a.1));
    segments.truncate(n);
    segments
}

/// `name` with anything but ASCII letters, digits, `-` and `_` replaced by `_`.
fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Writes `report.md` (the [`table`]), `report.json`, one `hist-<path>-<clock>.svg` per
/// path and clock that has a histogram (Sluice traced against plain QEMU) and
/// `stages.svg` (when the traced Sluice run has stage sums) into `dir`, creating it.
/// Returns the files written.
///
/// # Errors
/// If `dir` cannot be created or a file cannot be written.
pub fn write(dir: &Path, report: &Report) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let md = dir.join("report.md");
    std::fs::write(&md, table(report)).with_context(|| format!("writing {}", md.display()))?;
    written.push(md);
    let json = dir.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    written.push(json);

    for clock in CLOCKS {
        let runs: Vec<&Run> =
            [find(report, Side::Sluice, clock, true), find(report, Side::Reference, clock, false)]
                .into_iter()
                .flatten()
                .collect();
        let mut names: Vec<&str> = Vec::new();
        for path in runs.iter().flat_map(|r| &r.paths) {
            if !names.contains(&path.name.as_str()) {
                names.push(&path.name);
            }
        }
        for name in names {
            let series: Vec<(String, &[Bucket])> = runs
                .iter()
                .filter_map(|r| {
                    Some((r.side.label().to_owned(), &r.paths.iter().find(|p| p.name == name)?.hist))
                })
                .filter(|(_, hist)| !hist.is_empty())
                .map(|(label, hist)| (label, hist.as_slice()))
                .collect();
            if series.is_empty() {
                continue;
            }
            let out = dir.join(format!("hist-{}-{}.svg", file_safe(name), clock.slug()));
            plot::histogram(name, clock, &series, &out)?;
            written.push(out);
        }
    }

    if let Some(run) = stage_run(report).filter(|r| !r.stages.is_empty()) {
        let rows: Vec<(String, Vec<(String, f64)>)> = run
            .paths
            .iter()
            .filter_map(|p| Some((p.name.clone(), breakdown(p, &run.stages)?.segments)))
            .collect();
        if !rows.is_empty() {
            let out = dir.join("stages.svg");
            plot::stages(&rows, &out)?;
            written.push(out);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::model::LinuxRow;
    use crate::testutil::TempDir;

    fn path(name: &str, phase: u32, n: u64, [min, p50, p99, max]: [u64; 4], mean: f64) -> model::Path {
        model::Path { name: name.into(), phase, unit: "ns".into(), n, min, p50, p99, max, mean, hist: vec![] }
    }

    fn hist(mut p: model::Path, buckets: &[(u64, u64, u64)]) -> model::Path {
        p.hist = buckets.iter().map(|&(lo, hi, count)| Bucket { lo, hi, count }).collect();
        p
    }

    fn sums(phase: u32, reason: &str, exits: u64, ns: [u64; 7]) -> StageSums {
        let ns = SEGMENTS.iter().zip(ns).map(|(s, v)| (s.to_string(), v)).collect();
        StageSums { phase, reason: reason.into(), exits, ns }
    }

    fn run(side: Side, clock: Clock, trace: bool, paths: Vec<model::Path>, stages: Vec<StageSums>) -> Run {
        Run { side, clock, trace, paths, stages, error: None }
    }

    fn sample() -> Report {
        let traced = run(
            Side::Sluice,
            Clock::Icount,
            true,
            vec![
                hist(path("hvc-null", 1, 1000, [320, 336, 400, 1200], 340.5), &[(0, 16, 3), (320, 336, 12)]),
                hist(path("mmio-read", 3, 1000, [70, 78, 95, 300], 80.0), &[(64, 80, 700), (80, 96, 300)]),
                path("nop", 5, 10, [10, 12, 14, 20], 12.0),
            ],
            vec![
                sums(1, "hvc", 1000, [100_000, 20_000, 0, 0, 0, 0, 150_000]),
                sums(3, "irq", 10, [0, 0, 0, 0, 0, 500, 0]),
                sums(3, "mmio", 2000, [12_000, 3000, 4000, 50_000, 800, 9000, 7000]),
            ],
        );
        let untraced = run(
            Side::Sluice,
            Clock::Icount,
            false,
            vec![
                path("hvc-null", 1, 1000, [1, 330, 1, 1], 1.0),
                path("mmio-read", 3, 1000, [1, 88, 1, 1], 1.0),
            ],
            vec![],
        );
        let reference = run(
            Side::Reference,
            Clock::Icount,
            false,
            vec![hist(
                path("hvc-null", 1, 1000, [100, 120, 130, 500], 121.0),
                &[(96, 112, 10), (112, 128, 990)],
            )],
            vec![],
        );
        let wall = run(
            Side::Sluice,
            Clock::Wall,
            true,
            vec![hist(path("hvc-null", 1, 1000, [4000, 5000, 9000, 20_000], 5100.0), &[(4096, 8192, 1000)])],
            vec![],
        );
        let failed = Run {
            error: Some("QEMU timed out".into()),
            ..run(Side::Reference, Clock::Wall, false, vec![], vec![])
        };
        Report {
            runs: vec![wall, failed, reference, untraced, traced],
            linux: vec![
                LinuxRow {
                    label: "Sluice, -icount shift=0".into(),
                    boot_to_init_s: Some(1.234),
                    read_mib_s: Some(45.67),
                    direct_mib_s: Some(40.0),
                    direct_read_us: Some(61.25),
                },
                LinuxRow {
                    label: "plain QEMU, wall clock".into(),
                    boot_to_init_s: None,
                    read_mib_s: None,
                    direct_mib_s: None,
                    direct_read_us: None,
                },
            ],
            channel: vec![run(
                Side::Sluice,
                Clock::Icount,
                false,
                vec![
                    path("channel-one-way", 30, 10, [3700, 3760, 3800, 4000], 3770.0),
                    path("channel-round-trip", 30, 10, [7500, 7552, 7600, 8000], 7560.0),
                    path("channel-64k", 31, 2, [576_000, 576_496, 650_432, 650_432], 613_464.0),
                ],
                vec![],
            )],
        }
    }

    #[test]
    fn table_of_a_known_report() {
        let expected = "\
### -icount shift=0 (1 ns = 1 guest instruction)

| path | Sluice p50 | untraced p50 | plain QEMU p50 | ratio | Sluice min | Sluice p99 | Sluice max | plain QEMU p99 | tracing cost |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| hvc-null | 336 | 330 | 120 | 2.80x | 320 | 400 | 1200 | 130 | +6 |
| mmio-read | 78 | 88 | n/a | n/a | 70 | 95 | 300 | n/a | -10 |
| nop | 12 | n/a | n/a | n/a | 10 | 14 | 20 | n/a | n/a |

### wall clock (ns, noisy under TCG)

| path | Sluice p50 | untraced p50 | plain QEMU p50 | ratio | Sluice min | Sluice p99 | Sluice max | plain QEMU p99 | tracing cost |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| hvc-null | 5000 | n/a | n/a | n/a | 4000 | 9000 | 20000 | n/a | n/a |

### per-stage breakdown: Sluice, -icount shift=0, traced (ns per iteration)

| path | exits/iter | decode | dispatch | transport | backend | complete | inject | return | outside the trace | guest mean |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| hvc-null | 1.0 | 100 | 20 | 0 | 0 | 0 | 0 | 150 | 71 | 341 |
| mmio-read | 2.0 | 12 | 3 | 4 | 50 | 1 | 10 | 7 | -6 | 80 |
| nop | 0.0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 12 | 12 |

### VM-to-VM channel (Sluice only: plain QEMU has no equivalent)

| path | clock | p50 | p99 | hvc-null floor | above the floor | throughput |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
| channel-one-way | -icount shift=0 | 3760 | 3800 | 330 | 3430 |  |
| channel-round-trip | -icount shift=0 | 7552 | 7600 | 660 | 6892 |  |
| channel-64k | -icount shift=0 | 576496 | 650432 | n/a | n/a | 108.4 MiB/s |

### Linux guest

| run | boot to /init (s) | dd read of /dev/vda (MiB/s) | the same, direct (MiB/s) | 4 KiB direct read (µs) |
| --- | ---: | ---: | ---: | ---: |
| Sluice, -icount shift=0 | 1.23 | 45.7 | 40.0 | 61.2 |
| plain QEMU, wall clock | failed | failed | failed | failed |

### runs that failed

- plain QEMU, wall clock: QEMU timed out
";
        assert_eq!(table(&sample()), expected);
    }

    #[test]
    fn table_without_a_traced_run_or_stage_sums() {
        let mut report = sample();
        report.runs.retain(|r| !(r.clock == Clock::Icount && r.trace));
        report.runs.iter_mut().for_each(|r| r.stages.clear());
        report.linux.clear();
        report.channel.clear();
        let text = table(&report);
        assert!(text.starts_with(
            "### -icount shift=0 (1 ns = 1 guest instruction)\n\n\
             No traced Sluice run with figures under this clock.\n\n### wall clock"
        ));
        assert!(text.contains(
            "### per-stage breakdown: Sluice, wall clock, traced (ns per iteration)\n\n\
             No stage sums: the hypervisor reported no `\"trace\":\"stages\"` lines.\n\n### runs that failed"
        ));
        assert_eq!(table(&Report { runs: vec![], linux: vec![], channel: vec![] }), "");
    }

    #[test]
    fn top_contributors_biggest_first() {
        let report = sample();
        let top = top_contributors(&report, "mmio-read", 3);
        assert_eq!(top, vec![("backend".into(), 50.0), ("decode".into(), 12.0), ("inject".into(), 9.5)]);
        let top = top_contributors(&report, "hvc-null", 3);
        assert_eq!(top, vec![("return".into(), 150.0), ("decode".into(), 100.0), (OUTSIDE.into(), 70.5)]);
        assert_eq!(top_contributors(&report, "nop", 1), vec![(OUTSIDE.into(), 12.0)]);
        assert_eq!(top_contributors(&report, "mmio-read", 100).len(), SEGMENTS.len() + 1);
        assert!(top_contributors(&report, "no-such-path", 3).is_empty());
    }

    #[test]
    fn write_creates_every_file() {
        let dir = TempDir::new("bench-report");
        let out = dir.path().join("bench");
        let report = sample();
        let written = write(&out, &report).unwrap();
        let names: Vec<String> =
            written.iter().map(|p| p.strip_prefix(&out).unwrap().display().to_string()).collect();
        assert_eq!(
            names,
            [
                "report.md",
                "report.json",
                "hist-hvc-null-icount.svg",
                "hist-mmio-read-icount.svg",
                "hist-hvc-null-wall.svg",
                "stages.svg"
            ]
        );
        for file in &written {
            assert!(file.is_file(), "{}", file.display());
        }
        assert_eq!(std::fs::read_to_string(out.join("report.md")).unwrap(), table(&report));
        let json: Report =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        assert_eq!(json, report);

        let svg = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
        let hvc = svg("hist-hvc-null-icount.svg");
        for text in ["<svg", "hvc-null, -icount shift=0", "Sluice", "plain QEMU", "count"] {
            assert!(hvc.contains(text), "hist-hvc-null-icount.svg lacks {text}");
        }
        let mmio = svg("hist-mmio-read-icount.svg");
        assert!(mmio.contains("<svg") && mmio.contains("mmio-read") && mmio.contains("Sluice"));
        assert!(!mmio.contains("plain QEMU"));
        assert!(svg("hist-hvc-null-wall.svg").contains("hvc-null, wall clock"));
        let stages = svg("stages.svg");
        for text in ["<svg", "hvc-null", "mmio-read", "nop", "decode", "backend", "return", OUTSIDE] {
            assert!(stages.contains(text), "stages.svg lacks {text}");
        }
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("virtio-blk/read 4k"), "virtio-blk_read_4k");
    }
}
