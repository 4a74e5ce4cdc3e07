//! What the transfer commands show: progress bars on a terminal (one per file
//! and one overall, with rate and time left), one line per file otherwise, or a
//! JSON summary for scripts.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use ferry_client::files::{Progress, TransferReport};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{human_bytes, human_seconds};

/// Collects outcomes and draws progress for one command.
#[derive(Debug)]
pub struct Reporter {
    bars: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    json: bool,
    started: Instant,
    outcome: Mutex<Outcome>,
}

#[derive(Debug, Default)]
struct Outcome {
    files: Vec<TransferReport>,
    failed: Vec<(String, String)>,
}

/// Progress of one file: its bar and the overall bar.
#[derive(Debug)]
pub struct FileProgress {
    bar: Option<ProgressBar>,
    overall: Option<ProgressBar>,
    /// The position this file's bar had reached, so a retry does not count
    /// its bytes twice in the overall bar.
    reached: std::sync::atomic::AtomicU64,
}

impl Progress for FileProgress {
    fn begin(&self, total: Option<u64>, already: u64) {
        use std::sync::atomic::Ordering;
        if let Some(bar) = &self.bar {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(already);
        }
        let before = self.reached.swap(already, Ordering::Relaxed);
        if let Some(o) = &self.overall {
            if already >= before {
                o.inc(already - before);
            } else {
                o.set_position(o.position().saturating_sub(before - already));
            }
        }
    }

    fn advance(&self, bytes: u64) {
        self.reached
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        if let Some(o) = &self.overall {
            o.inc(bytes);
        }
    }
}

impl Reporter {
    /// Bars when stderr is a terminal and neither `quiet` nor `json` is asked
    /// for. `total_bytes` sizes the overall bar when known.
    pub fn new(quiet: bool, json: bool, files: usize, total_bytes: Option<u64>) -> Self {
        let interactive = std::io::stderr().is_terminal() && !quiet && !json;
        let (bars, overall) = if interactive {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = (files > 1).then(|| {
                let bar = multi.add(ProgressBar::new(total_bytes.unwrap_or(0)));
                bar.set_style(
                    ProgressStyle::with_template(
                        "total {bytes}/{total_bytes} {bar:30} {binary_bytes_per_sec} eta {eta} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar
            });
            (Some(multi), overall)
        } else {
            (None, None)
        };
        Reporter {
            bars,
            overall,
            json,
            started: Instant::now(),
            outcome: Mutex::default(),
        }
    }

    /// Progress for one file, labelled `label`.
    pub fn file(&self, label: &str) -> FileProgress {
        let bar = self.bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:30!} {bytes:>10}/{total_bytes:<10} {bar:25} {binary_bytes_per_sec:>12} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(label.to_owned());
            bar
        });
        FileProgress {
            bar,
            overall: self.overall.clone(),
            reached: 0.into(),
        }
    }

    /// Records a finished file and, off a terminal, prints its line.
    pub fn done(&self, progress: FileProgress, report: TransferReport) {
        if let (Some(bar), Some(m)) = (progress.bar, &self.bars) {
            bar.finish_and_clear();
            m.remove(&bar);
        }
        let line = describe(&report);
        if let Some(m) = &self.bars {
            let _ = m.println(line);
        } else if !self.json {
            println!("{line}");
        }
        if let Ok(mut o) = self.outcome.lock() {
            o.files.push(report);
        }
    }

    /// Records a file that failed, and says so on stderr.
    pub fn failed(&self, progress: Option<FileProgress>, label: &str, error: &anyhow::Error) {
        if let Some(FileProgress { bar: Some(bar), .. }) = progress {
            bar.abandon();
        }
        let text = error
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        match &self.bars {
            Some(m) => {
                let _ = m.println(format!("error: {label}: {text}"));
            }
            None => eprintln!("error: {label}: {text}"),
        }
        if let Ok(mut o) = self.outcome.lock() {
            o.failed.push((label.to_owned(), text));
        }
    }

    /// Ends the bars, prints the summary; true when nothing failed.
    pub fn finish(&self) -> bool {
        if let Some(o) = &self.overall {
            o.finish_and_clear();
        }
        let Ok(outcome) = self.outcome.lock() else {
            return false;
        };
        let bytes: u64 = outcome.files.iter().map(|r| r.bytes).sum();
        let seconds = self.started.elapsed().as_secs_f64();
        if self.json {
            let failed: Vec<serde_json::Value> = outcome
                .failed
                .iter()
                .map(|(path, error)| serde_json::json!({ "path": path, "error": error }))
                .collect();
            let summary = serde_json::json!({
                "ok": outcome.failed.is_empty(),
                "files": outcome.files,
                "failed": failed,
                "bytes": bytes,
                "seconds": seconds,
            });
            println!("{summary}");
        } else if outcome.files.len() + outcome.failed.len() > 1 {
            let line = format!(
                "{} transferred, {} failed, {} in {}",
                outcome.files.len(),
                outcome.failed.len(),
                human_bytes(bytes),
                human_seconds(seconds)
            );
            match &self.bars {
                Some(m) => {
                    let _ = m.println(line);
                }
                None => println!("{line}"),
            }
        }
        outcome.failed.is_empty()
    }
}

/// `a.txt <- ftp://host/a.txt: 1.0 MiB in 0.12s (8.3 MiB/s), resumed at 512 KiB, verified SHA-256`
fn describe(r: &TransferReport) -> String {
    let rate = if r.seconds > 0.0 {
        (r.bytes as f64 / r.seconds) as u64
    } else {
        r.bytes
    };
    let (from, to) = if r.upload {
        (r.local.display().to_string(), r.remote.clone())
    } else {
        (r.remote.clone(), r.local.display().to_string())
    };
    let mut line = format!(
        "{from} -> {to}: {} in {} ({}/s)",
        human_bytes(r.bytes),
        human_seconds(r.seconds),
        human_bytes(rate)
    );
    if r.resumed_from > 0 {
        line.push_str(&format!(", resumed at byte {}", r.resumed_from));
        if r.prefix_checked {
            line.push_str(" (prefix checksum matched)");
        }
    }
    match &r.verified {
        Some(ferry_client::files::Verification::Checksum { checksum }) => {
            line.push_str(&format!(", verified {}", checksum.algorithm.name()));
        }
        Some(ferry_client::files::Verification::Size) => line.push_str(", size verified"),
        None => {}
    }
    line
}
