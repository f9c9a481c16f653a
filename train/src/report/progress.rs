//! Live progress: an indicatif bar when stderr is a terminal, plain lines otherwise.
//!
//! CI logs, pipes and `| tee` get no cursor tricks: a bar redrawn in place becomes
//! thousands of lines or one unreadable one there. Plain lines come every `log_every`
//! steps and at the end; on a terminal one such line stays above the bar every
//! [`TERMINAL_LINE_EVERY`] × `log_every` steps, so the scrollback still tells the story.
//! (Not per epoch: a 131-picture folder has an epoch every 2 steps.) Once the first few
//! steps have set the pace, one line says when the run will end.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::LossRecord;
use crate::length::Length;

/// On a terminal, a line above the bar every this many `log_every`s.
pub const TERMINAL_LINE_EVERY: usize = 10;

/// "/total" after a count, or nothing when the run's end is a time.
fn out_of(total: Option<usize>) -> String {
    total.map(|t| format!("/{t}")).unwrap_or_default()
}

/// The bar (or lines) for a training run.
pub struct Progress {
    length: Length,
    /// Steps already done when this process started (a resumed run): rate and ETA count from here.
    start_step: usize,
    /// Training seconds done when this process started (for a time budget).
    start_seconds: f64,
    batch: usize,
    log_every: usize,
    /// The critic's two scores and the third loss.
    labels: [&'static str; 3],
    started: Instant,
    bar: Option<ProgressBar>,
    /// Where plain lines go: stderr, or a buffer in tests.
    sink: Box<dyn Write + Send>,
    /// The latest update (epoch, record), for the last line.
    last: Option<(usize, LossRecord)>,
    /// The step of the last line printed (0: none), so a line is never printed twice.
    printed: usize,
    /// Whether the line with the expected end has been printed.
    estimated: bool,
}

impl Progress {
    /// `labels` name the d_real / d_fake / gp columns, e.g. `["D(x)", "D(G(z))", "GP"]`; the third is
    /// shown when not zero.
    pub fn new(length: Length, start: (usize, f64), batch: usize, log_every: usize, labels: [&'static str; 3]) -> Self {
        let mut p = Self::plain(length, start, batch, log_every, labels, Box::new(std::io::stderr()));
        if interactive() {
            // A run with only a time budget: the bar's length is re-estimated as it goes.
            let total = length.steps.unwrap_or(start.0 + 1);
            let bar = ProgressBar::new(total as u64).with_style(bar_style()).with_position(start.0.min(total) as u64);
            bar.enable_steady_tick(Duration::from_millis(250));
            p.bar = Some(bar);
        }
        p
    }

    /// Plain lines into `sink`, whatever stderr is (for tests, and for callers that log to a file).
    pub fn plain(
        length: Length,
        (start_step, start_seconds): (usize, f64),
        batch: usize,
        log_every: usize,
        labels: [&'static str; 3],
        sink: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            length,
            start_step,
            start_seconds,
            batch,
            log_every: log_every.max(1),
            labels,
            started: Instant::now(),
            bar: None,
            sink,
            last: None,
            printed: 0,
            estimated: false,
        }
    }

    /// Records one finished step (`rec.step` counts from 1, over the whole run).
    pub fn update(&mut self, epoch: usize, rec: &LossRecord) {
        self.last = Some((epoch, *rec));
        self.estimate_once(rec.step);
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(format!("epoch {epoch}{}", out_of(self.length.epochs)));
                if self.length.steps.is_none() {
                    let (rate, eta) = self.rate_and_eta(rec.step);
                    let left = eta.map_or(1.0, |s| s * rate / self.batch as f64).ceil() as u64;
                    bar.set_length(rec.step as u64 + left.max(1));
                }
                bar.set_position(self.length.steps.map_or(rec.step, |s| rec.step.min(s)) as u64);
                bar.set_message(self.stats(rec));
                if rec.step.is_multiple_of(self.log_every * TERMINAL_LINE_EVERY) {
                    self.line_once(epoch, rec);
                }
            }
            None => {
                if rec.step.is_multiple_of(self.log_every) || self.length.steps.is_some_and(|s| rec.step >= s) {
                    self.line_once(epoch, rec);
                }
            }
        }
    }

    /// After the first steps in this process (3 of them, and 2 s), one line with the pace
    /// and the expected end.
    fn estimate_once(&mut self, step: usize) {
        let done = step.saturating_sub(self.start_step);
        if self.estimated || done < 3 || (self.started.elapsed().as_secs_f64() < 2.0 && done < 10) {
            return;
        }
        self.estimated = true;
        if let (rate, Some(eta)) = self.rate_and_eta(step) {
            self.message(&format!("canard-train: {rate:.1} img/s; this run ends in about {}", duration(eta)));
        }
    }

    /// Prints `text` on its own line, above the bar when there is one.
    pub fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                let _ = writeln!(self.sink, "{text}");
                let _ = self.sink.flush();
            }
        }
    }

    /// The last step's line (if not printed yet), and the bar left in its final state.
    pub fn finish(&mut self) {
        if let Some((e, rec)) = self.last {
            self.line_once(e, &rec);
        }
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    /// Images per second since this process started, and the seconds left: at that rate
    /// for a number of steps, by the clock for a time budget, the sooner of the two.
    pub fn rate_and_eta(&self, step: usize) -> (f64, Option<f64>) {
        let images = step.saturating_sub(self.start_step) as f64 * self.batch as f64;
        let secs = self.started.elapsed().as_secs_f64();
        if images <= 0.0 || secs <= 0.0 {
            return (0.0, None);
        }
        let rate = images / secs;
        let by_steps = self.length.steps.map(|s| s.saturating_sub(step) as f64 * self.batch as f64 / rate);
        let by_clock = self.length.seconds.map(|s| (s - self.start_seconds - secs).max(0.0));
        (rate, by_steps.into_iter().chain(by_clock).reduce(f64::min))
    }

    /// The full plain line for one record.
    pub fn line(&self, epoch: usize, rec: &LossRecord) -> String {
        let (epochs, steps) = (out_of(self.length.epochs), out_of(self.length.steps));
        format!("[{epoch}{epochs}] step {}{steps}  {}", rec.step, self.stats(rec))
    }

    /// Losses, rate and ETA: the bar's message and the tail of a plain line.
    fn stats(&self, rec: &LossRecord) -> String {
        let (rate, eta) = self.rate_and_eta(rec.step);
        let [real, fake, third] = self.labels;
        let gp = if rec.gp != 0.0 { format!("  {third} {:.4}", rec.gp) } else { String::new() };
        format!(
            "Loss_D {:.4}  Loss_G {:.4}  {real} {:.3}  {fake} {:.3}{gp}  {rate:.1} img/s  ETA {}",
            rec.loss_d,
            rec.loss_g,
            rec.d_real,
            rec.d_fake,
            eta.map(duration).unwrap_or_else(|| "?".into())
        )
    }

    fn line_once(&mut self, epoch: usize, rec: &LossRecord) {
        if std::mem::replace(&mut self.printed, rec.step) != rec.step {
            let line = self.line(epoch, rec);
            self.message(&line);
        }
    }
}

/// A count of finished items (e.g. pictures decoded), as a bar or as a line every 10%, for
/// tasks of more than `above` items (nothing for smaller ones). Shared by worker threads:
/// every method takes `&self`.
pub struct TaskBar {
    label: String,
    total: usize,
    done: AtomicUsize,
    bar: Option<ProgressBar>,
}

impl TaskBar {
    pub fn new(label: &str, total: usize, above: usize) -> Self {
        let total = if total > above { total } else { 0 };
        let bar = (interactive() && total > 0).then(|| {
            let style = ProgressStyle::with_template("{prefix} {wide_bar} {pos}/{len} {per_sec} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::new(total as u64).with_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        Self { label: label.to_string(), total, done: AtomicUsize::new(0), bar }
    }

    pub fn inc(&self) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            // One line each time another tenth is done: ten lines per task, whatever its size.
            None if self.total > 0 && n * 10 / self.total != (n - 1) * 10 / self.total => {
                eprintln!("{}: {n}/{} ({}%)", self.label, self.total, n * 100 / self.total);
            }
            None => {}
        }
    }

    /// Removes the bar (the caller prints its own summary line).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A bar only on a real terminal; `TERM=dumb` (Emacs shells, some CI) gets lines too.
fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {bar:24.cyan/blue} {pos}/{len}  {msg}")
        .map(|s| s.progress_chars("█▉▊▋▌▍▎▏ "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// 42s, 3m05s, 1h02m.
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap().lines().map(String::from).collect()
        }
    }

    fn rec(step: usize, epoch: usize) -> LossRecord {
        LossRecord { step, epoch, loss_d: 1.5, loss_g: 0.25, d_real: 0.75, d_fake: 0.125, gp: 0.0, seconds: 0.0 }
    }

    #[test]
    fn plain_lines_every_log_every_steps_and_at_the_end() {
        let buf = Buf::default();
        // 3 epochs of 7 steps, resumed after step 7, a line every 5 steps.
        let length = Length { steps: Some(21), seconds: None, epochs: Some(3) };
        let mut p = Progress::plain(length, (7, 0.0), 4, 5, ["C(x)", "C(G(z))", "GP"], Box::new(buf.clone()));
        p.message("hello");
        for step in 8..=21 {
            let epoch = (step - 1) / 7 + 1;
            p.update(epoch, &rec(step, epoch));
        }
        p.finish();
        p.finish();
        let lines = buf.lines();
        // After 3 steps and 2 s (or 10 steps), the pace and the expected end, once.
        let estimate: Vec<&String> = lines.iter().filter(|l| l.contains("this run ends in about")).collect();
        assert_eq!(estimate.len(), 1, "{lines:?}");
        assert!(estimate[0].starts_with("canard-train: ") && estimate[0].contains(" img/s"), "{lines:?}");
        let lines: Vec<String> = lines.into_iter().filter(|l| !l.contains("this run ends")).collect();
        let steps: Vec<&str> = lines.iter().skip(1).map(|l| l.split("  ").next().unwrap()).collect();
        assert_eq!(lines[0], "hello");
        assert_eq!(steps, ["[2/3] step 10/21", "[3/3] step 15/21", "[3/3] step 20/21", "[3/3] step 21/21"]);
        let l = &lines[1];
        assert!(l.contains("Loss_D 1.5000  Loss_G 0.2500  C(x) 0.750  C(G(z)) 0.125  "), "{l}");
        assert!(l.contains(" img/s  ETA "), "{l}");
        assert!(!l.contains("GP"), "{l}");
        let with_gp = p.line(3, &LossRecord { gp: 0.5, ..rec(21, 3) });
        assert!(with_gp.contains("GP 0.5000"), "{with_gp}");
    }

    #[test]
    fn a_time_budget_counts_down_by_the_clock_and_shows_no_step_total() {
        let length = Length { steps: None, seconds: Some(60.0), epochs: None };
        let before = Instant::now();
        let p = Progress::plain(length, (40, 50.0), 8, 10, ["D(x)", "D(G(z))", "GP"], Box::new(std::io::sink()));
        std::thread::sleep(Duration::from_millis(20));
        let (_, eta) = p.rate_and_eta(41);
        // 10 s of the budget were left when this process started, less the time since
        // (bounded by the clock, not a guess, so a stalled test machine cannot fail it).
        let eta = eta.unwrap();
        let since = before.elapsed().as_secs_f64();
        assert!(eta <= 10.0 - 0.02 && eta >= 10.0 - since - 0.001, "{eta} after {since} s");
        let line = p.line(2, &rec(41, 2));
        assert!(line.starts_with("[2] step 41  Loss_D"), "{line}");
        // Steps and a budget: the sooner.
        let both = Length { steps: Some(1_000_000), seconds: Some(60.0), epochs: Some(9) };
        let p = Progress::plain(both, (40, 50.0), 8, 10, ["D(x)", "D(G(z))", "GP"], Box::new(std::io::sink()));
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.rate_and_eta(41).1.unwrap() < 10.0);
        assert!(p.line(2, &rec(41, 2)).starts_with("[2/9] step 41/1000000  "));
    }

    #[test]
    fn rate_and_eta_count_from_the_start_step() {
        let length = Length { steps: Some(100), seconds: None, epochs: Some(1) };
        let p = Progress::plain(length, (40, 0.0), 8, 10, ["D(x)", "D(G(z))", "GP"], Box::new(std::io::sink()));
        assert_eq!(p.rate_and_eta(40), (0.0, None));
        std::thread::sleep(Duration::from_millis(20));
        let (rate, eta) = p.rate_and_eta(50);
        // 80 images in ≥ 20 ms; 50 steps left at that rate take 5× as long as 10 did.
        assert!(rate > 0.0 && rate <= 80.0 / 0.02, "{rate}");
        let elapsed = 80.0 / rate;
        assert!((eta.unwrap() - 5.0 * elapsed).abs() < 1e-6 * elapsed.max(1.0), "{eta:?}");
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(duration(41.6), "42s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(duration(-3.0), "0s");
    }
}
