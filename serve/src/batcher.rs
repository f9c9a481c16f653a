//! The loop of a model's inference thread: take one job, gather the jobs that are
//! already waiting, run them as one batch and hand each job its slice.
//!
//! It knows nothing of ONNX Runtime (the batch is run by a closure), so the queueing
//! rules are tested here with a fake model.

use std::sync::mpsc::{Receiver, TryRecvError};

use tokio::sync::oneshot;

use crate::engine::EngineError;

/// One request's seeds and where its images go: `seeds.len()` images of
/// `item_len` values each, in seed order.
pub struct Job {
    pub seeds: Vec<u64>,
    pub reply: oneshot::Sender<Result<Vec<f32>, EngineError>>,
}

/// Serves jobs until every sender is gone. `max_batch` bounds the images in one run;
/// a single job larger than that still runs, alone. A job whose requester has gone
/// away (client disconnected) is dropped before running, costing nothing.
pub fn run<F>(rx: Receiver<Job>, max_batch: usize, item_len: usize, mut infer: F)
where
    F: FnMut(&[u64]) -> Result<Vec<f32>, EngineError>,
{
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut images = first.seeds.len();
        let mut jobs = vec![first];
        while images < max_batch {
            match rx.try_recv() {
                Ok(job) if images + job.seeds.len() <= max_batch => {
                    images += job.seeds.len();
                    jobs.push(job);
                }
                Ok(job) => {
                    held = Some(job);
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        jobs.retain(|job| !job.reply.is_closed());
        if !jobs.is_empty() {
            run_batch(jobs, item_len, &mut infer);
        }
    }
}

fn run_batch<F>(jobs: Vec<Job>, item_len: usize, infer: &mut F)
where
    F: FnMut(&[u64]) -> Result<Vec<f32>, EngineError>,
{
    let seeds: Vec<u64> = jobs.iter().flat_map(|job| job.seeds.iter().copied()).collect();
    let result = infer(&seeds).and_then(|out| {
        if out.len() == seeds.len() * item_len {
            Ok(out)
        } else {
            Err(EngineError::Output(format!("{} values for {} images of {item_len} values", out.len(), seeds.len())))
        }
    });
    match result {
        Ok(out) => {
            let mut rest = out.as_slice();
            for job in jobs {
                let (mine, tail) = rest.split_at(job.seeds.len() * item_len);
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

    /// A fake model: image of seed s is `[s, s+0.5]`; records every batch it runs.
    fn fake(log: Arc<Mutex<Vec<Vec<u64>>>>) -> impl FnMut(&[u64]) -> Result<Vec<f32>, EngineError> {
        move |seeds| {
            log.lock().map_err(|_| EngineError::Stopped)?.push(seeds.to_vec());
            Ok(seeds.iter().flat_map(|&s| [s as f32, s as f32 + 0.5]).collect())
        }
    }

    fn job(seeds: &[u64]) -> (Job, oneshot::Receiver<Result<Vec<f32>, EngineError>>) {
        let (reply, rx) = oneshot::channel();
        (Job { seeds: seeds.to_vec(), reply }, rx)
    }

    /// Queues all jobs first, then runs the loop to completion: the batches it forms
    /// are then fully determined.
    fn run_queued(jobs: Vec<Job>, max_batch: usize) -> Vec<Vec<u64>> {
        let (tx, rx) = sync_channel(jobs.len());
        for j in jobs {
            tx.send(j).unwrap();
        }
        drop(tx);
        let log = Arc::new(Mutex::new(Vec::new()));
        run(rx, max_batch, 2, fake(log.clone()));
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

    #[test]
    fn failures_reach_every_job_of_the_batch() {
        let (tx, rx) = sync_channel(4);
        let (a, mut ra) = job(&[1]);
        let (b, mut rb) = job(&[2]);
        tx.send(a).unwrap();
        tx.send(b).unwrap();
        drop(tx);
        run(rx, 64, 2, |_| Err(EngineError::Inference("boom".into())));
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
        run(rx, 64, 2, |_| Ok(vec![0.0; 3]));
        assert!(matches!(ra.try_recv().unwrap(), Err(EngineError::Output(_))));
    }
}
