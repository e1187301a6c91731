//! A bounded FIFO of bytes in a fixed array: the input a VM has not taken yet (the
//! multiplexer's per-VM queue, a virtio-console's held input). Nothing allocates.

/// A ring of at most `N` bytes.
#[derive(Debug, Clone)]
pub struct ByteRing<const N: usize> {
    bytes: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> ByteRing<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Self { bytes: [0; N], head: 0, len: 0 }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `byte`; false (taking nothing) when the ring is full.
    pub fn push(&mut self, byte: u8) -> bool {
        if self.len == N {
            return false;
        }
        self.bytes[(self.head + self.len) % N] = byte;
        self.len += 1;
        true
    }

    /// Takes the oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        let byte = *self.front().first()?;
        self.consume(1);
        Some(byte)
    }

    /// The oldest bytes held that are contiguous in the array (all of them unless
    /// they wrap).
    pub fn front(&self) -> &[u8] {
        let end = (self.head + self.len).min(N);
        &self.bytes[self.head..end]
    }

    /// Drops the oldest `n` bytes (at most [`ByteRing::len`]).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % N;
        self.len -= n;
    }

    /// Empties the ring.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn a_full_ring_takes_nothing_and_wraps_in_order() {
        let mut ring = ByteRing::<4>::new();
        assert!((0..4).all(|b| ring.push(b)));
        assert!(!ring.push(9), "full");
        assert_eq!((ring.pop(), ring.pop()), (Some(0), Some(1)));
        assert!(ring.push(4) && ring.push(5));
        assert_eq!(ring.front(), [2, 3], "up to the end of the array");
        ring.consume(2);
        assert_eq!(ring.front(), [4, 5]);
        let rest: Vec<u8> = core::iter::from_fn(|| ring.pop()).collect();
        assert_eq!(rest, [4, 5]);
        assert!(ring.is_empty() && ring.pop().is_none());
        ring.push(7);
        ring.clear();
        assert_eq!(ring.len(), 0);
    }
}
