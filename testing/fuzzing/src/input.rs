//! Reading a fuzzer's bytes as a few small choices followed by packets.

/// The fuzzer's bytes, consumed from the front. Running out is never an error: a missing
/// choice reads as zero, a missing packet as empty.
#[derive(Debug)]
pub(crate) struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Input<'a> {
        Input { rest: data }
    }

    /// The next byte, or 0.
    pub(crate) fn u8(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian, or what is left of them.
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// The next `n` bytes, or fewer if the input ends.
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = b;
        a
    }

    /// The next packet: a two-byte length, then that many bytes (or what is left).
    pub(crate) fn packet(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    /// Whether nothing is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_choices_then_packets_and_never_fails() {
        let mut i = Input::new(&[7, 0, 2, 0xaa, 0xbb, 0, 9, 1]);
        assert_eq!(i.u8(), 7);
        assert_eq!(i.packet(), &[0xaa, 0xbb]);
        assert_eq!(i.packet(), &[1], "a packet cut short by the end");
        assert!(i.is_empty());
        assert_eq!(
            (i.u8(), i.u16(), i.packet(), i.rest()),
            (0, 0, &[][..], &[][..])
        );
    }
}
