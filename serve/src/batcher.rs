//! The loop of a model's inference thread: take one job, gather the jobs that are
//! waiting or arrive within a short wait, run them as one batch and hand each job
//! its slice.
//!
//! It knows nothing of ONNX Runtime (the batch is run by a closure) nor of what a
//! job's items are, so the queueing rules are tested here with a fake model.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::engine::EngineError;

/// One request's items (e.g. latent points) and where its images go:
/// `items.len()` images of `item_len` values each, in order.
pub struct Job<T> {
    pub items: Vec<T>,
    pub reply: oneshot::Sender<Result<Vec<f32>, EngineError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Most images in one run; a single job larger than that still runs, alone.
    pub max_batch: usize,
    /// Under load, how long to wait after the first job of a batch for more while
    /// the batch is not full. A short wait (1–2 ms) lets requests that arrive
    /// together share a run, for a latency cost bounded by this. "Under load" means
    /// the previous run gathered more than one job: a lone client never waits.
    pub max_wait: Duration,
}

/// Serves jobs until every sender is gone. `depth` counts jobs sent but not yet
/// taken off the queue: the sender adds one, this loop takes one per job it
/// receives. A job whose requester has gone away (client disconnected) is dropped
/// before running, costing nothing.
pub fn run<T: Clone, F>(rx: Receiver<Job<T>>, rules: Rules, item_len: usize, depth: &AtomicUsize, mut infer: F)
where
    F: FnMut(&[T]) -> Result<Vec<f32>, EngineError>,
{
    let taken = || {
        // Saturating: a sender that gave up after sending cannot make this wrap.
        let _ = depth.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| Some(d.saturating_sub(1)));
    };
    let mut held: Option<Job<T>> = None;
    let mut under_load = false;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => {
                    taken();
                    job
                }
                Err(_) => return,
            },
        };
        let deadline = Instant::now() + if under_load { rules.max_wait } else { Duration::ZERO };
        let mut images = first.items.len();
        let mut jobs = vec![first];
        while images < rules.max_batch {
            let next = match rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            taken();
            if images + next.items.len() <= rules.max_batch {
                images += next.items.len();
                jobs.push(next);
            } else {
                held = Some(next);
                break;
            }
        }
        under_load = jobs.len() > 1;
        jobs.retain(|job| !job.reply.is_closed());
        if !jobs.is_empty() {
            run_batch(jobs, item_len, &mut infer);
        }
    }
}

fn run_batch<T: Clone, F>(jobs: Vec<Job<T>>, item_len: usize, infer: &mut F)
where
    F: FnMut(&[T]) -> Result<Vec<f32>, EngineError>,
{
    let items: Vec<T> = jobs.iter().flat_map(|job| job.items.iter().cloned()).collect();
    let result = infer(&items).and_then(|out| {
        if out.len() == items.len() * item_len {
            Ok(out)
        } else {
            Err(EngineError::Output(format!("{} values for {} images of {item_len} values", out.len(), items.len())))
        }
    });
    match result {
        Ok(out) => {
            let mut rest = out.as_slice();
            for job in jobs {
                let (mine, tail) = rest.split_at(job.items.len() * item_len);
                rest = tail;
                // The requester may have left during the run; nothing to do then.
                let _ = job.reply.send(Ok(mine.to_vec()));
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;
    use std::sync::{Arc, Mutex};

    use super::*;

    type Reply = oneshot::Receiver<Result<Vec<f32>, EngineError>>;

    /// A fake model: image of seed s is `[s, s+0.5]`; records every batch it runs.
    fn fake(log: Arc<Mutex<Vec<Vec<u64>>>>) -> impl FnMut(&[u64]) -> Result<Vec<f32>, EngineError> {
        move |seeds| {
            log.lock().map_err(|_| EngineError::Stopped)?.push(seeds.to_vec());
            Ok(seeds.iter().flat_map(|&s| [s as f32, s as f32 + 0.5]).collect())
        }
    }

    fn job(seeds: &[u64]) -> (Job<u64>, Reply) {
        let (reply, rx) = oneshot::channel();
        (Job { items: seeds.to_vec(), reply }, rx)
    }

    fn rules(max_batch: usize) -> Rules {
        Rules { max_batch, max_wait: Duration::ZERO }
    }

    /// Queues all jobs first, then runs the loop to completion: the batches it forms
    /// are then fully determined.
    fn run_queued(jobs: Vec<Job<u64>>, max_batch: usize) -> Vec<Vec<u64>> {
        let (tx, rx) = sync_channel(jobs.len());
        let depth = AtomicUsize::new(jobs.len());
        for j in jobs {
            tx.send(j).unwrap();
        }
        drop(tx);
        let log = Arc::new(Mutex::new(Vec::new()));
        run(rx, rules(max_batch), 2, &depth, fake(log.clone()));
        assert_eq!(depth.load(Ordering::Relaxed), 0, "every job was taken off the queue");
        let batches = log.lock().unwrap().clone();
        batches
    }

    #[test]
    fn waiting_jobs_share_one_run_and_get_their_own_images() {
        let (a, mut ra) = job(&[1]);
        let (b, mut rb) = job(&[2, 3]);
        let (c, mut rc) = job(&[4]);
        assert_eq!(run_queued(vec![a, b, c], 64), vec![vec![1, 2, 3, 4]]);
        assert_eq!(ra.try_recv().unwrap().unwrap(), vec![1.0, 1.5]);
        assert_eq!(rb.try_recv().unwrap().unwrap(), vec![2.0, 2.5, 3.0, 3.5]);
        assert_eq!(rc.try_recv().unwrap().unwrap(), vec![4.0, 4.5]);
    }

    #[test]
    fn batches_never_exceed_the_limit_and_keep_order() {
        let jobs: Vec<_> = (0..5).map(|i| job(&[i])).collect();
        let (jobs, mut rxs): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        assert_eq!(run_queued(jobs, 2), vec![vec![0, 1], vec![2, 3], vec![4]]);
        for (i, rx) in rxs.iter_mut().enumerate() {
            assert_eq!(rx.try_recv().unwrap().unwrap(), vec![i as f32, i as f32 + 0.5]);
        }
        // A job that does not fit is held for the next batch, not split or dropped.
        let (a, _ra) = job(&[1, 2]);
        let (b, _rb) = job(&[3, 4, 5]);
        let (c, _rc) = job(&[6]);
        assert_eq!(run_queued(vec![a, b, c], 4), vec![vec![1, 2], vec![3, 4, 5, 6]]);
        let (big, mut rbig) = job(&[1, 2, 3]);
        assert_eq!(run_queued(vec![big], 2), vec![vec![1, 2, 3]]);
        assert_eq!(rbig.try_recv().unwrap().unwrap().len(), 6);
    }

    #[test]
    fn abandoned_jobs_are_skipped_and_a_fully_abandoned_batch_never_runs() {
        let (a, ra) = job(&[1]);
        let (b, mut rb) = job(&[2]);
        drop(ra);
        assert_eq!(run_queued(vec![a, b], 64), vec![vec![2]]);
        assert_eq!(rb.try_recv().unwrap().unwrap(), vec![2.0, 2.5]);

        let (a, ra) = job(&[1]);
        let (b, rb) = job(&[2]);
        drop((ra, rb));
        assert!(run_queued(vec![a, b], 64).is_empty());
    }

    type Log = Arc<Mutex<Vec<Vec<u64>>>>;

    /// Starts the loop on its own thread with a 5 s wait; `before` is queued first. The
    /// log of batches run is shared, so a test can wait for a batch instead of sleeping
    /// (a loaded machine may start the thread late).
    fn worker(before: Vec<Job<u64>>) -> (std::sync::mpsc::SyncSender<Job<u64>>, std::thread::JoinHandle<()>, Log) {
        let (tx, rx) = sync_channel(8);
        for j in before {
            tx.send(j).unwrap();
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let fake_log = log.clone();
        let handle = std::thread::spawn(move || {
            let rules = Rules { max_batch: 8, max_wait: Duration::from_secs(5) };
            run(rx, rules, 2, &AtomicUsize::new(0), fake(fake_log));
        });
        (tx, handle, log)
    }

    /// Waits until the log holds `batches`; how long that took.
    fn until_logged(log: &Log, batches: &[Vec<u64>]) -> Duration {
        let started = Instant::now();
        while log.lock().unwrap().as_slice() != batches {
            assert!(started.elapsed() < Duration::from_secs(60), "never ran {batches:?}: {:?}", log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(1));
        }
        started.elapsed()
    }

    #[test]
    fn a_lone_client_never_waits() {
        let (a, _ra) = job(&[1]);
        let (b, _rb) = job(&[2]);
        let (tx, handle, log) = worker(vec![]);
        tx.send(a).unwrap();
        // Waiting for company would take the whole 5 s wait.
        let took = until_logged(&log, &[vec![1]]);
        assert!(took < Duration::from_millis(2500), "the first job waited {took:?} for company");
        tx.send(b).unwrap();
        drop(tx);
        handle.join().unwrap();
        assert_eq!(*log.lock().unwrap(), vec![vec![1], vec![2]]);
    }

    #[test]
    fn the_short_wait_gathers_a_job_that_arrives_after_the_first() {
        // Two jobs queued together put the loop under load; then the wait gathers a
        // job that arrives 20 ms after the first.
        let (a, _ra) = job(&[1]);
        let (b, _rb) = job(&[2]);
        let (c, _rc) = job(&[3]);
        let (d, _rd) = job(&[4]);
        let (tx, handle, log) = worker(vec![a, b]);
        until_logged(&log, &[vec![1, 2]]);
        tx.send(c).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        tx.send(d).unwrap();
        drop(tx);
        handle.join().unwrap();
        assert_eq!(*log.lock().unwrap(), vec![vec![1, 2], vec![3, 4]]);
    }

    #[test]
    fn a_full_batch_does_not_wait() {
        // A full batch does not wait: with room for one image, each job runs alone
        // at once even with a long wait configured.
        let (tx, rx) = sync_channel(4);
        let (a, _ra) = job(&[1]);
        let (b, _rb) = job(&[2]);
        tx.send(a).unwrap();
        tx.send(b).unwrap();
        drop(tx);
        let log = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let rules = Rules { max_batch: 1, max_wait: Duration::from_secs(5) };
        run(rx, rules, 2, &AtomicUsize::new(0), fake(log.clone()));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(*log.lock().unwrap(), vec![vec![1], vec![2]]);
    }

    #[test]
    fn failures_reach_every_job_of_the_batch() {
        let (tx, rx) = sync_channel(4);
        let (a, mut ra) = job(&[1]);
        let (b, mut rb) = job(&[2]);
        tx.send(a).unwrap();
        tx.send(b).unwrap();
        drop(tx);
        run(rx, rules(64), 2, &AtomicUsize::new(2), |_: &[u64]| Err(EngineError::Inference("boom".into())));
        for rx in [&mut ra, &mut rb] {
            assert!(matches!(rx.try_recv().unwrap(), Err(EngineError::Inference(m)) if m == "boom"));
        }
    }

    #[test]
    fn wrong_output_sizes_are_errors_not_panics() {
        let (tx, rx) = sync_channel(1);
        let (a, mut ra) = job(&[1, 2]);
        tx.send(a).unwrap();
        drop(tx);
        run(rx, rules(64), 2, &AtomicUsize::new(1), |_: &[u64]| Ok(vec![0.0; 3]));
        assert!(matches!(ra.try_recv().unwrap(), Err(EngineError::Output(_))));
    }
}
