//! A descriptor chain popped from a virtqueue, and cursors over its bytes.
//!
//! A [`Chain`] is the list of guest buffers one request is made of (virtio 1.2
//! §2.7.5): device-readable buffers first, then device-writable ones, held in a
//! fixed array (at most [`MAX_QUEUE_SIZE`] of them) so popping allocates nothing.
//! The addresses are guest-physical and already checked to be RAM; the bytes are
//! reached through [`GuestMemory`] with a [`Cursor`], which sees the readable (or
//! writable) buffers as one stream, as the spec asks devices to ("framing", §2.6.4).

use super::queue_error::QueueError;
use super::MAX_QUEUE_SIZE;
use crate::mm::guest_memory::{GuestMemory, GuestMemoryError};

/// One guest buffer of a chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buffer {
    /// Guest-physical address of the first byte.
    pub addr: u64,
    /// Length in bytes (may be zero).
    pub len: u32,
}

/// A descriptor chain: its head index and its buffers.
#[derive(Clone)]
pub struct Chain {
    head: u16,
    /// Buffers in use, of which the first `readable` are device-readable.
    count: usize,
    readable: usize,
    buffers: [Buffer; MAX_QUEUE_SIZE as usize],
}

impl core::fmt::Debug for Chain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Chain")
            .field("head", &self.head)
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .finish()
    }
}

impl Chain {
    /// An empty chain starting at descriptor `head`. It is 4 KiB: a device keeps
    /// one (boxed) and [`Queue::pop_into`](super::queue::Queue::pop_into) refills
    /// it, rather than making and moving a new one per request.
    pub fn new(head: u16) -> Self {
        Self { head, count: 0, readable: 0, buffers: [Buffer::default(); MAX_QUEUE_SIZE as usize] }
    }

    /// Empties the chain for one starting at descriptor `head` (the old buffers
    /// stay in memory, unreachable: only the first `count` are ever read).
    pub(crate) fn restart(&mut self, head: u16) {
        (self.head, self.count, self.readable) = (head, 0, 0);
    }

    /// Appends a buffer; `limit` is the queue size, the longest chain allowed.
    ///
    /// # Errors
    ///
    /// `ChainTooLong` past `limit` buffers; `ReadableAfterWritable` for a readable
    /// buffer after a writable one (§2.7.4.2: the driver places device-writable
    /// descriptors after device-readable ones).
    pub(crate) fn push(&mut self, buffer: Buffer, writable: bool, limit: u16) -> Result<(), QueueError> {
        if self.count >= usize::from(limit).min(self.buffers.len()) {
            return Err(QueueError::ChainTooLong { head: self.head });
        }
        if !writable && self.count > self.readable {
            return Err(QueueError::ReadableAfterWritable { head: self.head });
        }
        self.buffers[self.count] = buffer;
        self.count += 1;
        if !writable {
            self.readable += 1;
        }
        Ok(())
    }

    /// Index of the chain's first descriptor: the id to give back in the used ring.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The device-readable buffers, in order.
    pub fn readable(&self) -> &[Buffer] {
        &self.buffers[..self.readable]
    }

    /// The device-writable buffers, in order.
    pub fn writable(&self) -> &[Buffer] {
        &self.buffers[self.readable..self.count]
    }

    /// Total bytes of the readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable().iter().map(|b| u64::from(b.len)).sum()
    }

    /// Total bytes of the writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable().iter().map(|b| u64::from(b.len)).sum()
    }

    /// A cursor at the start of the readable bytes.
    pub fn reader(&self) -> Cursor<'_> {
        Cursor::new(self.readable())
    }

    /// A cursor at the start of the writable bytes.
    pub fn writer(&self) -> Cursor<'_> {
        Cursor::new(self.writable())
    }
}

/// A position in the bytes of a list of buffers, seen as one stream.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buffers: &'a [Buffer],
    /// Current buffer, and bytes of it already passed.
    index: usize,
    offset: u32,
}

impl<'a> Cursor<'a> {
    /// A cursor at the first byte of `buffers`.
    pub fn new(buffers: &'a [Buffer]) -> Self {
        Self { buffers, index: 0, offset: 0 }
    }

    /// Bytes left after the cursor.
    pub fn remaining(&self) -> u64 {
        let rest: u64 = self.buffers.iter().skip(self.index).map(|b| u64::from(b.len)).sum();
        rest - u64::from(self.offset)
    }

    /// The next contiguous run of at most `max` bytes, `(guest address, length)`,
    /// moving the cursor past it; `None` at the end (or when `max` is 0).
    pub fn next_span(&mut self, max: usize) -> Option<(u64, usize)> {
        if max == 0 {
            return None;
        }
        while let Some(b) = self.buffers.get(self.index) {
            let left = b.len - self.offset;
            if left == 0 {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let len = usize::try_from(left).map_or(max, |left| left.min(max));
            let addr = b.addr + u64::from(self.offset);
            // `len` <= `left`, a u32.
            self.offset += len as u32;
            return Some((addr, len));
        }
        None
    }

    /// Moves the cursor `n` bytes on (or to the end); returns how far it moved.
    pub fn skip(&mut self, n: u64) -> u64 {
        let mut done = 0;
        while done < n {
            let step = usize::try_from(n - done).unwrap_or(usize::MAX);
            let Some((_, len)) = self.next_span(step) else { break };
            done += len as u64;
        }
        done
    }

    /// Copies the next bytes into `out`, as many as are left; returns how many.
    ///
    /// # Errors
    ///
    /// A [`GuestMemoryError`] if a buffer is not RAM (chains are checked when popped,
    /// so only if the VM's memory changed since).
    pub fn read(&mut self, mem: &GuestMemory, out: &mut [u8]) -> Result<usize, GuestMemoryError> {
        let mut done = 0;
        while let Some((addr, len)) = self.next_span(out.len() - done) {
            mem.read(addr, &mut out[done..done + len])?;
            done += len;
        }
        Ok(done)
    }

    /// Copies `data` into the next bytes, as much as fits; returns how many.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    pub fn write(&mut self, mem: &GuestMemory, data: &[u8]) -> Result<usize, GuestMemoryError> {
        let mut done = 0;
        while let Some((addr, len)) = self.next_span(data.len() - done) {
            mem.write(addr, &data[done..done + len])?;
            done += len;
        }
        Ok(done)
    }

    /// Copies `len` bytes of `src` at `src_at` (a disk) into the next bytes, as
    /// much as fits; returns how many.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read), or if `src` is not that long.
    pub fn write_from(
        &mut self,
        mem: &GuestMemory,
        src: &GuestMemory,
        src_at: u64,
        len: u64,
    ) -> Result<u64, GuestMemoryError> {
        self.each_span(len, |addr, done, n| mem.copy_from(addr, src, src_at + done, n))
    }

    /// Copies the next bytes, at most `len`, into `dst` at `dst_at` (a disk);
    /// returns how many.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read), or if `dst` is not that long.
    pub fn read_into(
        &mut self,
        mem: &GuestMemory,
        dst: &GuestMemory,
        dst_at: u64,
        len: u64,
    ) -> Result<u64, GuestMemoryError> {
        self.each_span(len, |addr, done, n| dst.copy_from(dst_at + done, mem, addr, n))
    }

    /// Calls `f(guest address, bytes before it, length)` for the next contiguous
    /// runs, at most `len` bytes in all, moving past them; returns how many.
    pub fn each_span(
        &mut self,
        len: u64,
        mut f: impl FnMut(u64, u64, u64) -> Result<(), GuestMemoryError>,
    ) -> Result<u64, GuestMemoryError> {
        let mut done = 0;
        while let Some((addr, n)) = self.next_span(usize::try_from(len - done).unwrap_or(usize::MAX)) {
            f(addr, done, n as u64)?;
            done += n as u64;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::testing::ram;

    fn chain_of(bufs: &[(u64, u32, bool)]) -> Chain {
        let mut c = Chain::new(3);
        for &(addr, len, w) in bufs {
            c.push(Buffer { addr, len }, w, MAX_QUEUE_SIZE).unwrap();
        }
        c
    }

    #[test]
    fn splits_readable_and_writable() {
        let c = chain_of(&[(0x100, 16, false), (0x200, 0, false), (0x300, 512, true), (0x500, 1, true)]);
        assert_eq!(c.head(), 3);
        assert_eq!(c.readable().len(), 2);
        assert_eq!(c.writable(), &[Buffer { addr: 0x300, len: 512 }, Buffer { addr: 0x500, len: 1 }]);
        assert_eq!((c.readable_len(), c.writable_len()), (16, 513));
    }

    #[test]
    fn refuses_readable_after_writable_and_too_many() {
        let mut c = Chain::new(0);
        c.push(Buffer { addr: 0, len: 1 }, true, 4).unwrap();
        assert_eq!(
            c.push(Buffer { addr: 0, len: 1 }, false, 4),
            Err(QueueError::ReadableAfterWritable { head: 0 })
        );
        for _ in 0..3 {
            c.push(Buffer { addr: 0, len: 1 }, true, 4).unwrap();
        }
        assert_eq!(c.push(Buffer { addr: 0, len: 1 }, true, 4), Err(QueueError::ChainTooLong { head: 0 }));
    }

    #[test]
    fn cursors_stream_across_buffers() {
        let mem = ram();
        let base = crate::devices::virtio::testing::RAM_BASE;
        let c = chain_of(&[
            (base, 3, false),
            (base + 0x100, 0, false),
            (base + 0x200, 5, false),
            (base + 0x300, 4, true),
            (base + 0x400, 4, true),
        ]);
        mem.write(base, b"abc").unwrap();
        mem.write(base + 0x200, b"defgh").unwrap();
        let mut r = c.reader();
        assert_eq!(r.remaining(), 8);
        let mut two = [0u8; 2];
        assert_eq!(r.read(&mem, &mut two).unwrap(), 2);
        assert_eq!(&two, b"ab");
        assert_eq!(r.skip(2), 2);
        let mut rest = [0u8; 10];
        assert_eq!(r.read(&mem, &mut rest).unwrap(), 4);
        assert_eq!(&rest[..4], b"efgh");
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.skip(5), 0);

        let mut w = c.writer();
        assert_eq!(w.write(&mem, b"0123456789").unwrap(), 8);
        let mut back = [0u8; 4];
        mem.read(base + 0x400, &mut back).unwrap();
        assert_eq!(&back, b"4567");
    }
}
