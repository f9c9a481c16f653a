//! Which images each batch takes. Epoch e's order is a pure function of (seed, e), so
//! a checkpoint only records (epoch, position) to resume mid-epoch exactly.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub struct Cursor {
    seed: u64,
    batch: usize,
    /// The current epoch, 0-based.
    pub epoch: usize,
    /// Batches taken in the current epoch.
    pub pos: usize,
    order: Vec<usize>,
}

impl Cursor {
    pub fn new(len: usize, batch: usize, seed: u64, epoch: usize, pos: usize) -> Self {
        Self { seed, batch, epoch, pos, order: permutation(len, seed, epoch) }
    }

    /// Whole batches per epoch (the remainder is left out, as PyTorch's `drop_last`).
    pub fn per_epoch(&self) -> usize {
        self.order.len() / self.batch
    }

    /// Epochs completed so far.
    pub fn completed(&self) -> usize {
        self.epoch + usize::from(self.pos == self.per_epoch())
    }

    pub fn next_batch(&mut self) -> &[usize] {
        if self.pos == self.per_epoch() {
            self.epoch += 1;
            self.pos = 0;
            self.order = permutation(self.order.len(), self.seed, self.epoch);
        }
        self.pos += 1;
        &self.order[(self.pos - 1) * self.batch..self.pos * self.batch]
    }
}

fn permutation(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let stream = seed ^ 0xDA7A_0000_0000_0000 ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(stream));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_and_resuming_mid_epoch_continues_the_same_sequence() {
        let mut a = Cursor::new(10, 3, 7, 0, 0);
        assert_eq!(a.per_epoch(), 3);
        let first: Vec<usize> = (0..3).flat_map(|_| a.next_batch().to_vec()).collect();
        let mut sorted = first.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 9, "no image twice in an epoch");
        assert_eq!(a.completed(), 1);
        let second = a.next_batch().to_vec();
        assert_eq!(a.epoch, 1);
        let (e, p) = (a.epoch, a.pos);
        let rest: Vec<Vec<usize>> = (0..5).map(|_| a.next_batch().to_vec()).collect();
        let mut b = Cursor::new(10, 3, 7, e, p);
        let resumed: Vec<Vec<usize>> = (0..5).map(|_| b.next_batch().to_vec()).collect();
        assert_eq!(rest, resumed);
        assert_ne!(first[..3], second[..], "epochs are shuffled differently");
    }
}
