//! The workers' packet buffers, each starting at a page boundary.
//!
//! Every byte a worker moves is copied by the kernel between its buffers and socket or TAP
//! memory (`copy_from_user`/`copy_to_user`, `rep movsb` on CPUs with fast short `rep mov`).
//! On AMD Zen 3 that instruction runs about 15 times slower (2.5 instead of 40 GB/s, measured
//! on this project's EPYC VMs) when the destination sits 1 to 31 bytes past the source modulo
//! 4096, and the kernel's side of the copy is page-aligned (socket and TAP fragments start at
//! offset 0 of their pages). A heap buffer starts wherever the allocator put it, which moves
//! with the binary and the order of allocations: the same data plane carried one TCP stream at
//! 6.5 or 9.9 Gbit/s depending on it. Page-aligned buffers make the layout the same in every
//! process, and measured fast on every underlay (docs/performance.md, 2026-12-05).

use std::ops::{Deref, DerefMut, Range};

/// Alignment of a [`PageBuf`]: the page size of every architecture ovnet runs on (larger pages
/// are multiples of it).
const PAGE: usize = 4096;

/// A zeroed byte buffer whose first byte is at the start of a page. Safe code: it allocates a
/// page more than asked and uses the part that starts at a page boundary.
pub(crate) struct PageBuf {
    store: Vec<u8>,
    range: Range<usize>,
}

impl PageBuf {
    /// A zeroed, page-aligned buffer of `len` bytes.
    pub(crate) fn new(len: usize) -> PageBuf {
        let store = vec![0u8; len + PAGE];
        let start = (PAGE - store.as_ptr().addr() % PAGE) % PAGE;
        PageBuf {
            store,
            range: start..start + len,
        }
    }
}

impl Deref for PageBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.store[self.range.clone()]
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.store[self.range.clone()]
    }
}

impl std::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageBuf")
            .field("len", &self.range.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_a_page_and_has_the_length_asked_for() {
        for len in [0, 1, 100, 65_548, 200_000] {
            let mut b = PageBuf::new(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % PAGE, 0, "len {len}");
            assert!(b.iter().all(|&x| x == 0));
            if len > 0 {
                b[len - 1] = 7;
                assert_eq!(b[len - 1], 7);
            }
        }
    }
}
